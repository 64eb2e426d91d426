//! Which declarations a generated name sees, and where its errors point.
//!
//! A span carries a location (where errors point) and a resolution (which
//! declarations a name sees). Generated code is spanned on the user's tokens so
//! that type errors point at them. Outside macros, the user's tokens and the
//! macro's call site resolve alike; inside a `macro_rules!` they need not: the
//! tokens of a fragment (`$model:ty`, `$with:path`, a body passed on as `tt`s)
//! resolve as the generator's caller, the call site as the generator's body. A
//! generated local, `self` or lifetime declared with one resolution and used
//! with the other is not found (`cannot find value __outbox_model`).
//!
//! So each generated name is declared and used with one resolution, and moved
//! to where its errors should point with `located_at`. The resolution is the
//! call site's ([`call_site_at`]), except for names rustc reports errors at as
//! operands (an argument, the operand of `&`): an expression whose tokens do
//! not share one resolution is reported at the whole macro call, and one that
//! resolves in the macro's context is reported as the macro's ("in this macro
//! expansion"). Those names resolve as the user's tokens they are reported at,
//! in their declaration too ([`resolving_as`]).

use proc_macro2::{Ident, Span};

/// The call site's resolution at `at`'s location.
pub(crate) fn call_site_at(at: Span) -> Span {
    Span::call_site().located_at(at)
}

/// At the call site, resolving as the tokens at `at`: for the declaration of
/// a name whose uses are reported at (and resolve as) those tokens.
pub(crate) fn resolving_as(at: Span) -> Span {
    Span::call_site().resolved_at(at)
}

/// `self`, reported at `at`, meaning the receiver of a method the macro wrote.
pub(crate) fn self_at(at: Span) -> Ident {
    Ident::new("self", call_site_at(at))
}
