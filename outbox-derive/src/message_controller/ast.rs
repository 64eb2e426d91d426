//! The macro's input as a typed model: the impl block and its methods, each
//! with its `#[on]` names and the signature it came from (for spans).

use syn::ext::IdentExt;
use syn::{ImplItem, ItemImpl, LitStr, Signature, Type};

use super::attr;
use super::symbol::ON;
use crate::attr_util::path_to_string;
use crate::ctxt::Ctxt;

/// The impl block the macro is on.
pub(crate) struct Controller<'a> {
    pub(crate) self_ty: &'a Type,
    pub(crate) methods: Vec<Method<'a>>,
}

/// One method of the impl block.
pub(crate) struct Method<'a> {
    /// The name, without `r#`.
    pub(crate) name: String,
    pub(crate) sig: &'a Signature,
    /// Its `#[on("..")]` event names; `Some` whenever it has an `#[on]`, even
    /// one already reported as malformed.
    pub(crate) on: Option<Vec<LitStr>>,
}

impl<'a> Controller<'a> {
    /// Reads the impl block; records an error and gives `None` for a trait impl.
    /// A generic impl is reported but still read, so its methods' mistakes are
    /// reported in the same build.
    pub(crate) fn from_ast(cx: &Ctxt, item: &'a ItemImpl) -> Option<Self> {
        if let Some((path, _)) = &item.trait_ {
            cx.error_spanned_by(
                path,
                format!(
                    "`#[message_controller]` goes on an inherent impl block (`impl UsersController {{ .. }}`), \
                     not on an impl of `{}`: it writes the `outbox::Controller` impl itself",
                    path_to_string(path)
                ),
            );
            return None;
        }
        if !item.generics.params.is_empty() {
            cx.error_spanned_by(
                &item.generics,
                "`#[message_controller]` does not support generic impl blocks: \
                 a controller is one concrete type (`impl UsersController { .. }`)",
            );
        } else if let Some(where_clause) = &item.generics.where_clause {
            cx.error_spanned_by(
                where_clause,
                "`#[message_controller]` does not support `where` clauses on the impl block",
            );
        }

        let mut methods = Vec::new();
        for impl_item in &item.items {
            let attrs = match impl_item {
                ImplItem::Fn(method) => {
                    methods.push(Method {
                        name: method.sig.ident.unraw().to_string(),
                        sig: &method.sig,
                        on: attr::on_names(cx, &method.attrs),
                    });
                    continue;
                }
                ImplItem::Const(item) => &item.attrs,
                ImplItem::Type(item) => &item.attrs,
                ImplItem::Macro(item) => &item.attrs,
                _ => continue,
            };
            for on in attrs.iter().filter(|a| a.path().is_ident(ON)) {
                cx.error_spanned_by(
                    on,
                    "`#[on]` goes on a method: \
                     `#[on(\"password_reset\")] async fn password_reset(&self, ctx: &mut Context<'_>, msg: &Message) -> Result<(), HandlerError>`",
                );
            }
        }
        Some(Controller {
            self_ty: &item.self_ty,
            methods,
        })
    }
}
