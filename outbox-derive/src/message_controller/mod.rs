//! `#[message_controller]`: parse (`attr`, `ast`) → validate → expand.

mod ast;
mod attr;
mod expand;
mod symbol;
mod validate;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{ImplItem, Item, ItemImpl};

use crate::ctxt::Ctxt;

pub(crate) fn message_controller(args: TokenStream, input: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let args = attr::Args::from_tokens(&cx, args);
    let item = match syn::parse2::<Item>(input.clone()) {
        Ok(Item::Impl(item)) => item,
        parsed => {
            match parsed {
                Ok(other) => not_an_impl(&cx, &other),
                Err(error) => cx.syn_error(error),
            }
            let errors = cx.check().err().map(syn::Error::into_compile_error);
            return quote!(#errors #input);
        }
    };
    let controller = ast::Controller::from_ast(&cx, &item);
    let model = controller.and_then(|controller| validate::model(&cx, args, controller));
    // `#[on]` is this macro's: the impl block goes back without it, even beside errors.
    let stripped = strip_on(&item);
    match (cx.check(), model) {
        (Ok(()), Some(model)) => expand::expand(&model, &stripped),
        (result, _) => {
            let errors = result.err().map(syn::Error::into_compile_error);
            // A stub impl keeps one mistake from cascading where the controller
            // is used; for a trait impl or a generic one it would be wrong.
            let fallback = (item.trait_.is_none() && item.generics.params.is_empty())
                .then(|| expand::fallback(&item.self_ty));
            quote!(#errors #stripped #fallback)
        }
    }
}

fn strip_on(item: &ItemImpl) -> ItemImpl {
    let mut item = item.clone();
    for impl_item in &mut item.items {
        let attrs = match impl_item {
            ImplItem::Fn(item) => &mut item.attrs,
            ImplItem::Const(item) => &mut item.attrs,
            ImplItem::Type(item) => &mut item.attrs,
            ImplItem::Macro(item) => &mut item.attrs,
            _ => continue,
        };
        attrs.retain(|attr| !attr.path().is_ident(symbol::ON));
    }
    item
}

/// Reports the macro on anything but an impl block, at the item's keyword and name.
fn not_an_impl(cx: &Ctxt, item: &Item) {
    let (tokens, what) = match item {
        Item::Struct(s) => {
            let (token, ident) = (&s.struct_token, &s.ident);
            (quote!(#token #ident), "a struct")
        }
        Item::Enum(e) => {
            let (token, ident) = (&e.enum_token, &e.ident);
            (quote!(#token #ident), "an enum")
        }
        Item::Union(u) => {
            let (token, ident) = (&u.union_token, &u.ident);
            (quote!(#token #ident), "a union")
        }
        Item::Fn(f) => {
            let (token, ident) = (&f.sig.fn_token, &f.sig.ident);
            (quote!(#token #ident), "a function")
        }
        Item::Trait(t) => {
            let (token, ident) = (&t.trait_token, &t.ident);
            (quote!(#token #ident), "a trait")
        }
        Item::Mod(m) => {
            let (token, ident) = (&m.mod_token, &m.ident);
            (quote!(#token #ident), "a module")
        }
        Item::Const(c) => {
            let (token, ident) = (&c.const_token, &c.ident);
            (quote!(#token #ident), "a constant")
        }
        Item::Static(s) => {
            let (token, ident) = (&s.static_token, &s.ident);
            (quote!(#token #ident), "a static")
        }
        Item::Type(t) => {
            let (token, ident) = (&t.type_token, &t.ident);
            (quote!(#token #ident), "a type alias")
        }
        other => (quote!(#other), "this item"),
    };
    cx.error_spanned_by(
        tokens,
        format!(
            "`#[message_controller]` goes on an impl block (`impl UsersController {{ .. }}`), not on {what}"
        ),
    );
}
