//! `#[derive(Outboxed)]` on models whose `#[outbox(..)]` (on the struct and on
//! a field) and `#[diesel(..)]` attributes hold any tokens, plain or in the
//! invisible groups of `macro_rules!` fragments: the macro never panics (its
//! error collector included), and what it emits is Rust that parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outbox_fuzz::input::MacroInput;
use outbox_fuzz::tokens::lex;
use proc_macro2::TokenStream;
use quote::quote;

fuzz_target!(|data: &[u8]| {
    let Some(input) = MacroInput::read(data) else {
        return;
    };
    let attr = |index: usize, name: &str| -> Option<Option<TokenStream>> {
        let text = input.part(index);
        if text.is_empty() {
            return Some(None);
        }
        let tokens = lex(text, input.flags)?;
        let name = proc_macro2::Ident::new(name, proc_macro2::Span::call_site());
        Some(Some(quote!(#[#name(#tokens)])))
    };
    let (Some(container), Some(field), Some(other_field), Some(diesel)) = (
        attr(0, "outbox"),
        attr(1, "outbox"),
        attr(2, "outbox"),
        attr(3, "diesel"),
    ) else {
        return;
    };
    let item = quote! {
        #diesel
        #container
        pub struct Model {
            #field
            pub id: i64,
            #other_field
            pub email: String,
        }
    };
    let output = outbox_fuzz::derive_outboxed(item);
    if let Err(error) = syn::parse2::<syn::File>(output.clone()) {
        panic!("the derive emitted tokens that do not parse ({error}): {output}");
    }
});
