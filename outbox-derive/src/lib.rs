//! Procedural macros of the `outbox` crate. Use them through `outbox`
//! (`outbox::Outboxed`, `outbox::message_controller`), which documents them.

mod attr_util;
mod ctxt;
mod outboxed;
mod symbol;

use proc_macro::TokenStream;

/// Derives `outbox::Outboxed`; documented on the re-export in `outbox`.
#[proc_macro_derive(Outboxed, attributes(outbox, diesel))]
pub fn derive_outboxed(input: TokenStream) -> TokenStream {
    outboxed::derive(input.into()).into()
}

/// `#[message_controller]`: not implemented yet; using it is a compile error.
#[proc_macro_attribute]
pub fn message_controller(_args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let span = item
        .clone()
        .into_iter()
        .next()
        .map_or_else(proc_macro2::Span::call_site, |t| t.span());
    quote::quote_spanned!(span=> ::core::compile_error!("#[message_controller] is not implemented yet");).into()
}
