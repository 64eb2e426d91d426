//! `#[message_controller(..)]` and `#[on(..)]` as typed values.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::{Parse, ParseStream, Parser};
use syn::{Attribute, LitStr, Meta, Path, Token, Type};

use super::symbol::*;
use crate::attr_util::{self, Attr, check_name, check_topic, key_name, record};
use crate::ctxt::Ctxt;

/// The macro's arguments.
pub(crate) struct Args {
    pub(crate) model: Option<Type>,
    pub(crate) table: Option<Path>,
    pub(crate) route: Option<LitStr>,
    pub(crate) topic: Option<LitStr>,
    pub(crate) strict: bool,
    /// `group = false`: never apply messages in groups.
    pub(crate) group: bool,
    /// `gap = ".."`, with its literal (for spans).
    pub(crate) gap: Option<(Gap, LitStr)>,
}

/// What a message more than one version past its row's does
/// (`#[message_controller(gap = "..")]`, for a model with a version field).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Gap {
    /// Retriable: retried with backoff, then the failure policy (the default).
    Wait,
    /// Permanent: the failure policy at once.
    Stop,
    /// Applied, and counted.
    Accept,
}

impl Args {
    pub(crate) fn from_tokens(cx: &Ctxt, tokens: TokenStream) -> Self {
        let mut model = Attr::none(MODEL);
        let mut table = Attr::none(TABLE);
        let mut route = Attr::none(ROUTE);
        let mut topic = Attr::none(TOPIC);
        let mut strict = Attr::none(STRICT);
        let mut group = Attr::none(GROUP);
        let mut gap = Attr::none(GAP);
        // Keys given with a bad value, misspelt, or lost to a syntax error:
        // already reported, so not "missing" too.
        let mut attempted = Vec::new();

        let parser = syn::meta::parser(|meta| {
            let key = key_name(&meta);
            if let Some(known) = ARGS.iter().find(|k| **k == key) {
                attempted.push(*known);
            }
            match key.as_str() {
                MODEL => {
                    if let Some(v) = record(cx, &meta, model_type(&meta)) {
                        model.set(cx, &meta.path, v);
                    }
                }
                TABLE => {
                    if let Some(v) = record(
                        cx,
                        &meta,
                        attr_util::item_path(&meta, TABLE, attr_util::TABLE),
                    ) {
                        table.set(cx, &meta.path, v);
                    }
                }
                ROUTE => {
                    if let Some(v) = record(cx, &meta, attr_util::lit_str(&meta, ROUTE)) {
                        if let Err(reason) = check_name(ROUTE, &v.value()) {
                            cx.error_spanned_by(&v, reason);
                        }
                        route.set(cx, &meta.path, v);
                    }
                }
                TOPIC => {
                    if let Some(v) = record(cx, &meta, attr_util::lit_str(&meta, TOPIC)) {
                        if let Err(reason) = check_topic(&v.value()) {
                            cx.error_spanned_by(&v, reason);
                        }
                        topic.set(cx, &meta.path, v);
                    }
                }
                STRICT => {
                    if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
                        cx.error_spanned_by(
                            &meta.path,
                            "`strict` takes no value: `#[message_controller(.., strict)]`",
                        );
                        attr_util::skip_value(&meta)?;
                    }
                    strict.set(cx, &meta.path, ());
                }
                GROUP => {
                    if let Some(v) = record(cx, &meta, group_value(&meta)) {
                        group.set(cx, &meta.path, v);
                    }
                }
                GAP => {
                    if let Some(v) = record(cx, &meta, attr_util::lit_str(&meta, GAP)) {
                        match gap_policy(&v.value()) {
                            Some(policy) => gap.set(cx, &meta.path, (policy, v)),
                            None => cx.error_spanned_by(
                                &v,
                                format!(
                                    "unknown gap policy {:?}: expected `gap = \"wait\"` (retried, \
                                     then the failure policy; the default), `gap = \"stop\"` (the \
                                     failure policy at once) or `gap = \"accept\"` (applied, the gap \
                                     counted)",
                                    v.value()
                                ),
                            ),
                        }
                    }
                }
                _ => attempted.extend(attr_util::unknown_key(
                    cx,
                    &meta,
                    "`message_controller`",
                    ARGS,
                )?),
            }
            Ok(())
        });
        if let Err(error) = parser.parse2(tokens) {
            cx.syn_error(error);
            // The keys after a syntax error are lost: do not call them missing.
            attempted.extend([MODEL, TABLE]);
        }

        let (model, table) = (model.get(), table.get());
        if model.is_none() && !attempted.contains(&MODEL) {
            cx.error_at(
                Span::call_site(),
                "missing `model`, the `Outboxed` model the messages carry: \
                 `#[message_controller(model = User, table = users)]`",
            );
        }
        if table.is_none() && !attempted.contains(&TABLE) {
            cx.error_at(
                Span::call_site(),
                "missing `table`, the Diesel table the model is applied to: \
                 `#[message_controller(model = User, table = users)]`",
            );
        }

        Args {
            model,
            table,
            route: route.get(),
            topic: topic.get(),
            strict: strict.get().is_some(),
            group: group.get().unwrap_or(true),
            gap: gap.get(),
        }
    }
}

/// `gap = "wait" | "stop" | "accept"`.
fn gap_policy(value: &str) -> Option<Gap> {
    match value {
        WAIT => Some(Gap::Wait),
        STOP => Some(Gap::Stop),
        ACCEPT => Some(Gap::Accept),
        _ => None,
    }
}

/// `group = false` (or `true`, the default).
fn group_value(meta: &ParseNestedMeta<'_>) -> syn::Result<bool> {
    const EXPECTED: &str = "expected `group = false` or `group = true`";
    if !meta.input.peek(Token![=]) {
        return Err(meta.error(EXPECTED));
    }
    let value = meta.value()?;
    let expr: syn::Expr = value.parse()?;
    match &expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Bool(b),
            ..
        }) => Ok(b.value),
        other => Err(syn::Error::new_spanned(other, EXPECTED)),
    }
}

/// `model = User` (or serde's style, `model = "User"`). syn reads a lone
/// `crate`, `self` or `super` as a type; none is one. `Self` is: the
/// controller's impl may be on the model itself.
fn model_type(meta: &ParseNestedMeta<'_>) -> syn::Result<Type> {
    let model = attr_util::value(meta, MODEL, "Type", |value| {
        if value.peek(LitStr) {
            return value.parse::<LitStr>()?.parse();
        }
        value.parse()
    })?;
    if let Type::Path(path) = &model
        && path.qself.is_none()
        && let Some(keyword) = attr_util::lone_keyword(&path.path)
        && keyword != "Self"
    {
        return Err(syn::Error::new_spanned(
            keyword,
            format!("`{MODEL}` expects the model's type, found the keyword `{keyword}`"),
        ));
    }
    Ok(model)
}

/// The event names of a method's `#[on("..")]` attributes, or `None` when it
/// has none. A malformed or invalid one is reported and left out, but the
/// method still counts as a custom-event handler (not as a misspelt hook).
pub(crate) fn on_names(cx: &Ctxt, attrs: &[Attribute]) -> Option<Vec<LitStr>> {
    let mut found = false;
    let mut names = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident(ON)) {
        found = true;
        let list = match &attr.meta {
            Meta::List(list) if !list.tokens.is_empty() => list,
            _ => {
                cx.error_spanned_by(
                    attr,
                    "`#[on]` needs the event's name: `#[on(\"password_reset\")]`",
                );
                continue;
            }
        };
        let name = |input: ParseStream<'_>| attr_util::ungrouped(input, <LitStr as Parse>::parse);
        let name = match name.parse2(list.tokens.clone()) {
            Ok(name) => name,
            Err(_) => {
                cx.error_spanned_by(
                    &list.tokens,
                    "expected the event's name as a string literal: `#[on(\"password_reset\")]`",
                );
                continue;
            }
        };
        let value = name.value();
        if EVENTS.contains(&value.as_str()) {
            cx.error_spanned_by(
                &name,
                format!(
                    "`{value}` is a built-in event, not a custom one; to replace its handling, \
                     write `async fn {value}(&self, ctx: &mut Context<'_>, msg: &Message) -> Result<(), HandlerError>` \
                     without `#[on]`"
                ),
            );
        } else if let Err(reason) = check_event_name(&value) {
            cx.error_spanned_by(&name, format!("invalid event name {value:?}: {reason}"));
        } else {
            names.push(name);
        }
    }
    found.then_some(names)
}

/// The rule of `outbox::EventName::new` (outbox/src/event.rs), repeated here:
/// this crate cannot depend on `outbox` (which depends on it), and a name the
/// runtime would refuse must fail the build, at the literal. The lifecycle
/// names are checked by the caller, with a message of their own.
pub(crate) fn check_event_name(name: &str) -> Result<(), String> {
    /// `outbox::EventName::MAX_LEN`.
    const MAX_LEN: usize = 128;
    if name.is_empty() {
        return Err("a name must not be empty".to_owned());
    }
    if name.len() > MAX_LEN {
        return Err(format!(
            "{} bytes long, at most {MAX_LEN} allowed",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-'))
    {
        return Err(format!(
            "{c:?} is not allowed; event names use only `a-z`, `0-9`, `_`, `.` and `-`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_follow_the_runtime_rule() {
        for good in ["a", "password_reset", "user.locked-v2", &"z".repeat(128)] {
            assert_eq!(check_event_name(good), Ok(()), "{good:?}");
        }
        let cases = [
            ("", "must not be empty"),
            ("Upper", "'U' is not allowed"),
            ("with space", "' ' is not allowed"),
            ("café", "'é' is not allowed"),
            (&"a".repeat(129), "129 bytes long, at most 128"),
        ];
        for (bad, reason) in cases {
            let error = check_event_name(bad).unwrap_err();
            assert!(error.contains(reason), "{bad:?}: {error}");
        }
    }

    #[test]
    fn routes_have_no_blanks() {
        assert_eq!(check_name(ROUTE, "users"), Ok(()));
        assert!(check_name(ROUTE, "").is_err());
        assert!(check_name(ROUTE, "my users").is_err());
    }
}
