//! What the fuzz targets share: the byte layout of their inputs (read with
//! `arbitrary`, written by the seed generator, so the committed corpus is made
//! of real encoded messages), the derived models, and `outbox-derive`'s parser
//! modules compiled in by path.

// outbox-derive is a proc-macro crate, which can export no functions: its
// modules (as listed in its lib.rs, found by build.rs) are compiled here as
// they are (they use only syn, quote, proc_macro2 and strsim), at the crate
// root where their `crate::` paths point.
include!(concat!(env!("OUT_DIR"), "/derive_modules.rs"));

pub mod input;
pub mod models;
pub mod pg_array;
pub mod tokens;

use proc_macro2::TokenStream;

/// `#[derive(Outboxed)]` on `input`, as the compiler would run it.
pub fn derive_outboxed(input: TokenStream) -> TokenStream {
    outboxed::derive(input)
}

/// `#[message_controller(args)]` on `item`, as the compiler would run it.
pub fn message_controller(args: TokenStream, item: TokenStream) -> TokenStream {
    message_controller::message_controller(args, item)
}
