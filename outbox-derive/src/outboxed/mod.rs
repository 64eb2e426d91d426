//! `#[derive(Outboxed)]`: parse (`ast`, `attr`) → validate → expand.

mod ast;
mod attr;
mod avro;
mod expand;
mod validate;

use proc_macro2::TokenStream;
use syn::DeriveInput;

use crate::ctxt::Ctxt;

pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    let cx = Ctxt::new();
    let container = ast::Container::from_ast(&cx, &input);
    // The fallback must name the crate where the user says it is, or it adds errors.
    let krate: syn::Path = container
        .as_ref()
        .and_then(|c| c.attrs.krate.clone())
        .unwrap_or_else(|| syn::parse_quote!(::outbox));
    let versioned = container
        .as_ref()
        .is_some_and(|c| c.fields.iter().any(|f| f.attrs.version.is_some()));
    let model = container.and_then(|container| validate::model(&cx, container));
    match (cx.check(), model) {
        (Ok(()), Some(model)) => expand::expand(&model),
        (result, _) => {
            let errors = result.err().map(syn::Error::into_compile_error);
            // A stub impl keeps one mistake from cascading; generics would make it wrong.
            let fallback = input
                .generics
                .params
                .is_empty()
                .then(|| expand::fallback(&input.ident, &krate, versioned));
            quote::quote!(#errors #fallback)
        }
    }
}
