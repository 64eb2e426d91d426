//! The derive's input as a typed model: the struct and its fields, each with
//! its attributes and the syntax it came from (for spans).

use syn::{Data, DeriveInput, Fields, Ident, Type};

use super::attr::{ContainerAttrs, FieldAttrs};
use crate::ctxt::Ctxt;

/// The struct the derive is on.
pub(crate) struct Container<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) attrs: ContainerAttrs,
    pub(crate) fields: Vec<Field<'a>>,
}

/// One named field.
pub(crate) struct Field<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    pub(crate) attrs: FieldAttrs,
}

impl<'a> Container<'a> {
    /// Reads the struct; records an error and gives `None` for anything but a
    /// struct with named fields and no generic parameters.
    pub(crate) fn from_ast(cx: &Ctxt, input: &'a DeriveInput) -> Option<Self> {
        let attrs = ContainerAttrs::from_ast(cx, &input.attrs);
        let fields = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => &named.named,
                Fields::Unnamed(_) => {
                    cx.error_spanned_by(
                        &data.fields,
                        "`Outboxed` needs named fields (payload keys come from field names); a tuple struct has none",
                    );
                    return None;
                }
                Fields::Unit => {
                    cx.error_spanned_by(
                        &input.ident,
                        "`Outboxed` needs a struct with named fields; a unit struct has none",
                    );
                    return None;
                }
            },
            Data::Enum(data) => {
                cx.error_spanned_by(
                    data.enum_token,
                    "`Outboxed` can only be derived for a struct with named fields, not an enum",
                );
                return None;
            }
            Data::Union(data) => {
                cx.error_spanned_by(
                    data.union_token,
                    "`Outboxed` can only be derived for a struct with named fields, not a union",
                );
                return None;
            }
        };
        if !input.generics.params.is_empty() {
            cx.error_spanned_by(
                &input.generics,
                "`Outboxed` cannot be derived for a struct with generic parameters or lifetimes: \
                 a consumer must build the model from a payload it owns; use owned field types",
            );
            return None;
        }
        let fields = fields
            .iter()
            .map(|field| Field {
                ident: field.ident.as_ref().expect("named field"),
                ty: &field.ty,
                attrs: FieldAttrs::from_ast(cx, &field.attrs),
            })
            .collect();
        Some(Container {
            ident: &input.ident,
            attrs,
            fields,
        })
    }
}
