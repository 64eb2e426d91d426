//! Procedural macros of the `outbox` crate. Use them through `outbox`
//! (`outbox::Outboxed`, `outbox::message_controller`), not directly.

use proc_macro::TokenStream;

/// `#[derive(Outboxed)]`: not implemented yet; using it is a compile error.
#[proc_macro_derive(Outboxed, attributes(outbox))]
pub fn derive_outboxed(input: TokenStream) -> TokenStream {
    not_implemented("#[derive(Outboxed)]", input)
}

/// `#[message_controller]`: not implemented yet; using it is a compile error.
#[proc_macro_attribute]
pub fn message_controller(_args: TokenStream, item: TokenStream) -> TokenStream {
    not_implemented("#[message_controller]", item)
}

fn not_implemented(what: &str, input: TokenStream) -> TokenStream {
    let input = proc_macro2::TokenStream::from(input);
    let message = format!("{what} is not implemented yet");
    let first = input.clone().into_iter().next();
    let span = first.map_or_else(proc_macro2::Span::call_site, |t| t.span());
    quote::quote_spanned!(span=> ::core::compile_error!(#message);).into()
}
