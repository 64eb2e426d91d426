//! Procedural macros of the `outbox` crate. Use them through `outbox`
//! (`outbox::Outboxed`, `outbox::message_controller`), which documents them.

mod attr_util;
mod ctxt;
mod hygiene;
mod message_controller;
mod outboxed;
mod symbol;

use proc_macro::TokenStream;

/// Derives `outbox::Outboxed`; documented on the re-export in `outbox`.
#[proc_macro_derive(Outboxed, attributes(outbox, diesel))]
pub fn derive_outboxed(input: TokenStream) -> TokenStream {
    outboxed::derive(input.into()).into()
}

/// `#[message_controller]`; documented on the re-export in `outbox`.
#[proc_macro_attribute]
pub fn message_controller(args: TokenStream, item: TokenStream) -> TokenStream {
    message_controller::message_controller(args.into(), item.into()).into()
}
