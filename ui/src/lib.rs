//! The user's view of `outbox`'s macros: compile-fail and compile-pass cases
//! (trybuild) under `tests/ui/<macro>/`, run by `tests/ui.rs`.
//!
//! A crate of its own so that trybuild, which builds every dev-dependency of
//! the crate it runs in, builds only what a macro user needs (`outbox` with
//! its `diesel` feature, diesel, serde): no librdkafka. The crate has no code.
