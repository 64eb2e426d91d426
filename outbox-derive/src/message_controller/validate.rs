//! Rules across the arguments and the methods; turns the parsed input into
//! the model expansion reads. Every broken rule is recorded, then checking
//! goes on.

use std::collections::BTreeMap;

use quote::ToTokens;
use syn::{FnArg, Ident, LitStr, PatType, Path, Receiver, ReceiverKind, ReturnType, Safety, Type};

use super::ast::{Controller, Method};
use super::attr::{Args, Gap};
use super::symbol::*;
use crate::ctxt::Ctxt;

/// Everything expansion needs, already checked.
pub(crate) struct Model<'a> {
    pub(crate) self_ty: &'a Type,
    pub(crate) model: Type,
    pub(crate) table: Path,
    pub(crate) route: Option<LitStr>,
    /// The topic read, when not the model's.
    pub(crate) topic: Option<LitStr>,
    pub(crate) strict: bool,
    /// Whether hook-free built-in upserts may be applied in groups.
    pub(crate) group: bool,
    /// `gap = ".."`, when given: the policy and its literal.
    pub(crate) gap: Option<(Gap, LitStr)>,
    pub(crate) created: Handling<'a>,
    pub(crate) updated: Handling<'a>,
    pub(crate) destroyed: Handling<'a>,
    /// Custom events, in the order they were declared.
    pub(crate) custom: Vec<Custom<'a>>,
}

/// What the controller does with a built-in event.
pub(crate) enum Handling<'a> {
    /// The upsert (or delete), between the hooks that exist.
    BuiltIn {
        before: Option<Call<'a>>,
        after: Option<Call<'a>>,
    },
    /// `async fn created(&self, ctx, msg)` and the like, instead.
    Replaced(Call<'a>),
}

/// A method the generated code calls, with the tokens that type errors about
/// the call are reported at.
#[derive(Clone, Copy)]
pub(crate) struct Call<'a> {
    pub(crate) ident: &'a Ident,
    /// The context's type, as written.
    pub(crate) ctx_ty: &'a Type,
    /// The type of the last argument (model, key or message), as written.
    pub(crate) arg_ty: &'a Type,
    /// The return type, as written.
    pub(crate) output: &'a Type,
}

/// `#[on("name")] async fn handler(&self, ctx, msg)`.
pub(crate) struct Custom<'a> {
    pub(crate) name: String,
    pub(crate) call: Call<'a>,
}

/// What a method's last argument is, and what it returns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `before_create`/`before_update`: the model by value, returned.
    ModelByValue,
    /// `after_create`/`after_update`: the model by reference.
    ModelByRef,
    /// `before_destroy`/`after_destroy`: the key by reference.
    KeyByRef,
    /// `created`/`updated`/`destroyed` and `#[on]` handlers: the message.
    Message,
}

impl Shape {
    fn of_hook(hook: &str) -> Self {
        match hook {
            BEFORE_CREATE | BEFORE_UPDATE => Shape::ModelByValue,
            AFTER_CREATE | AFTER_UPDATE => Shape::ModelByRef,
            _ => Shape::KeyByRef,
        }
    }

    /// The last argument, for messages.
    fn argument(self) -> &'static str {
        match self {
            Shape::ModelByValue | Shape::ModelByRef => "the model",
            Shape::KeyByRef => "the key",
            Shape::Message => "the message",
        }
    }

    fn returns(self, model: &str) -> String {
        match self {
            Shape::ModelByValue => format!("Result<{model}, HandlerError>"),
            _ => "Result<(), HandlerError>".to_owned(),
        }
    }

    /// The whole signature, for messages.
    fn expected(self, name: &str, model: &str) -> String {
        let argument = match self {
            Shape::ModelByValue => format!("model: {model}"),
            Shape::ModelByRef => format!("model: &{model}"),
            Shape::KeyByRef => format!("key: &<{model} as Outboxed>::Key"),
            Shape::Message => "msg: &Message".to_owned(),
        };
        format!(
            "expected `async fn {name}(&self, ctx: &mut Context<'_>, {argument}) -> {}`",
            self.returns(model)
        )
    }
}

pub(crate) fn model<'a>(cx: &Ctxt, args: Args, controller: Controller<'a>) -> Option<Model<'a>> {
    let model_name = args
        .model
        .as_ref()
        .map_or_else(|| "Model".to_owned(), display);

    // Hooks and replaced events by name: where they are (for "never runs"),
    // and the call, when the signature is right.
    let mut present: BTreeMap<&'static str, &'a Ident> = BTreeMap::new();
    let mut calls: BTreeMap<&'static str, Call<'a>> = BTreeMap::new();
    let mut custom = Vec::new();
    let mut handled: BTreeMap<String, &'a Ident> = BTreeMap::new();

    for method in &controller.methods {
        let name = method.name.as_str();
        let ident = &method.sig.ident;
        let known = HOOKS.iter().chain(EVENTS).find(|k| **k == name).copied();
        if let Some(names) = &method.on {
            if let Some(known) = known {
                cx.error_spanned_by(
                    ident,
                    format!(
                        "`{known}` is the name of a {}; give the `#[on]` handler another name",
                        if EVENTS.contains(&known) {
                            "built-in event's handler"
                        } else {
                            "hook"
                        }
                    ),
                );
                continue;
            }
            let call = signature(cx, method, Shape::Message, &model_name);
            for lit in names {
                let event = lit.value();
                if let Some(first) = handled.get(&event) {
                    cx.error_spanned_by(
                        lit,
                        format!("duplicate event {event:?}: `{first}` already handles it"),
                    );
                    continue;
                }
                handled.insert(event.clone(), ident);
                if let Some(call) = call {
                    custom.push(Custom { name: event, call });
                }
            }
        } else if let Some(known) = known {
            present.insert(known, ident);
            let shape = if EVENTS.contains(&known) {
                Shape::Message
            } else {
                Shape::of_hook(known)
            };
            if let Some(call) = signature(cx, method, shape, &model_name) {
                calls.insert(known, call);
            }
        } else if let Some(misspelling) = misspelling(name) {
            cx.error_spanned_by(ident, misspelling.message(name));
        }
    }

    check_hooks_run(cx, &present);
    if let Some((_, gap)) = &args.gap
        && present.contains_key(CREATED)
        && present.contains_key(UPDATED)
    {
        cx.error_spanned_by(
            gap,
            "`gap` has no effect: `async fn created` and `async fn updated` replace the \
             built-in upserts whose version check it configures",
        );
    }

    let (Some(model), Some(table)) = (args.model, args.table) else {
        return None;
    };
    if cx.has_errors() {
        return None;
    }
    let handling = |event: &str, before: &[&str], after: &[&str]| match calls.get(event) {
        Some(call) => Handling::Replaced(*call),
        None => Handling::BuiltIn {
            before: before.iter().find_map(|hook| calls.get(hook).copied()),
            after: after.iter().find_map(|hook| calls.get(hook).copied()),
        },
    };
    Some(Model {
        self_ty: controller.self_ty,
        model,
        table,
        route: args.route,
        topic: args.topic,
        strict: args.strict,
        group: args.group,
        gap: args.gap,
        // `created` falls back on the update hooks: created is updated for a new row.
        created: handling(
            CREATED,
            &[BEFORE_CREATE, BEFORE_UPDATE],
            &[AFTER_CREATE, AFTER_UPDATE],
        ),
        updated: handling(UPDATED, &[BEFORE_UPDATE], &[AFTER_UPDATE]),
        destroyed: handling(DESTROYED, &[BEFORE_DESTROY], &[AFTER_DESTROY]),
        custom,
    })
}

/// A hook of a replaced event would never run: an error rather than dead code.
/// `before_update` and `after_update` also serve `created` when it has no hook
/// of its own, so they never run only when neither event uses them.
fn check_hooks_run(cx: &Ctxt, present: &BTreeMap<&'static str, &Ident>) {
    let replaced = |event: &str| present.contains_key(event);
    for (&hook, ident) in present {
        let reason = match hook {
            BEFORE_CREATE | AFTER_CREATE if replaced(CREATED) => {
                "`async fn created` replaces the handling of `created`".to_owned()
            }
            BEFORE_DESTROY | AFTER_DESTROY if replaced(DESTROYED) => {
                "`async fn destroyed` replaces the handling of `destroyed`".to_owned()
            }
            BEFORE_UPDATE | AFTER_UPDATE if replaced(UPDATED) => {
                let own = if hook == BEFORE_UPDATE {
                    BEFORE_CREATE
                } else {
                    AFTER_CREATE
                };
                if replaced(CREATED) {
                    "`async fn updated` and `async fn created` replace the handling of both events it serves"
                        .to_owned()
                } else if present.contains_key(own) {
                    format!(
                        "`async fn updated` replaces the handling of `updated`, and `created` uses `{own}`"
                    )
                } else {
                    continue;
                }
            }
            _ => continue,
        };
        cx.error_spanned_by(ident, format!("`{hook}` never runs: {reason}"));
    }
}

/// Checks what can be checked before type checking: `async`, `&self`, the
/// number of arguments, which are references, and a `Result` return type.
/// The types themselves are left to rustc, which reports them at the user's
/// tokens (see `expand`).
fn signature<'a>(cx: &Ctxt, method: &Method<'a>, shape: Shape, model: &str) -> Option<Call<'a>> {
    let sig = method.sig;
    let name = method.name.as_str();
    let expected = shape.expected(name, model);
    let mut ok = true;
    let mut error = |tokens: &dyn ToTokens, message: String| {
        cx.error_spanned_by(tokens.to_token_stream(), format!("{message}\n{expected}"));
        ok = false;
    };

    if sig.asyncness.is_none() {
        error(&sig.fn_token, format!("`{name}` must be an `async fn`"));
    }
    if let Safety::Unsafe(unsafe_token) = &sig.safety {
        error(unsafe_token, format!("`{name}` must not be `unsafe`"));
    }

    let mut arguments: Vec<&PatType> = Vec::new();
    let mut receiver: Option<&Receiver> = None;
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => receiver = Some(r),
            FnArg::Typed(typed) => arguments.push(typed),
        }
    }
    match receiver {
        Some(r) if shared_self(r) => {}
        Some(r) => error(r, format!("`{name}` takes `&self`")),
        None => match arguments.first() {
            Some(first) => error(*first, format!("`{name}` takes `&self` first")),
            None => error(
                &sig.ident,
                format!(
                    "`{name}` takes `&self`, the context and {}",
                    shape.argument()
                ),
            ),
        },
    }

    let mut types = None;
    if receiver.is_some() || !arguments.is_empty() {
        if arguments.len() > 2 {
            let extra: Vec<&PatType> = arguments[2..].to_vec();
            error(
                &quote::quote!(#(#extra),*),
                format!(
                    "too many arguments: `{name}` takes the context and {} after `&self`",
                    shape.argument()
                ),
            );
        } else if arguments.len() < 2 {
            error(
                &Parens(sig),
                format!(
                    "missing argument: `{name}` takes the context and {} after `&self`",
                    shape.argument()
                ),
            );
        } else {
            let (ctx, arg) = (&*arguments[0].ty, &*arguments[1].ty);
            if !matches!(peel(ctx), Type::Reference(r) if r.mutability.is_some()) {
                error(
                    ctx,
                    "the context is taken by mutable reference: `ctx: &mut Context<'_>`".to_owned(),
                );
            }
            let by_shared_ref = matches!(peel(arg), Type::Reference(r) if r.mutability.is_none());
            match shape {
                Shape::ModelByValue if matches!(peel(arg), Type::Reference(_)) => error(
                    arg,
                    format!(
                        "`{name}` takes the model by value (`model: {model}`) and returns it, changed or not"
                    ),
                ),
                Shape::ModelByRef if !by_shared_ref => error(
                    arg,
                    format!("`{name}` takes the model by shared reference: `model: &{model}`"),
                ),
                Shape::KeyByRef if !by_shared_ref => error(
                    arg,
                    format!(
                        "`{name}` takes the key by shared reference: `key: &<{model} as Outboxed>::Key`"
                    ),
                ),
                Shape::Message if !by_shared_ref => error(
                    arg,
                    format!("`{name}` takes the message by shared reference: `msg: &Message`"),
                ),
                _ => {}
            }
            types = Some((ctx, arg));
        }
    }

    let output = match &sig.output {
        ReturnType::Type(_, ty) if is_result(ty) => Some(&**ty),
        ReturnType::Type(_, ty) => {
            error(
                &**ty,
                format!("`{name}` must return `{}`", shape.returns(model)),
            );
            None
        }
        _ => {
            error(
                &sig.ident,
                format!("`{name}` must return `{}`", shape.returns(model)),
            );
            None
        }
    };

    let ((ctx_ty, arg_ty), output) = (types?, output?);
    ok.then_some(Call {
        ident: &sig.ident,
        ctx_ty,
        arg_ty,
        output,
    })
}

/// The parentheses of a signature, for "missing argument" errors.
struct Parens<'a>(&'a syn::Signature);

impl ToTokens for Parens<'_> {
    fn to_tokens(&self, tokens: &mut proc_macro2::TokenStream) {
        self.0
            .paren_token
            .surround(tokens, |inner| self.0.inputs.to_tokens(inner));
    }
}

/// `&self`, `&'a self` or `self: &Self`.
fn shared_self(receiver: &Receiver) -> bool {
    match &receiver.kind {
        ReceiverKind::Reference(_, _, mutability) => mutability.is_none(),
        ReceiverKind::Typed(_, ty) => {
            matches!(peel(ty), Type::Reference(r) if r.mutability.is_none())
        }
        _ => false,
    }
}

/// A path type named `Result` (or an alias ending in `Result`, such as
/// `HandlerResult<()>`); rustc checks the rest.
fn is_result(ty: &Type) -> bool {
    match peel(ty) {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident.to_string().ends_with("Result")),
        _ => false,
    }
}

/// The type inside invisible groups (from `macro_rules!`) and parentheses.
fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => peel(&group.elem),
        Type::Paren(paren) => peel(&paren.elem),
        _ => ty,
    }
}

/// Tokens as a user wrote them, near enough for a message (`a::B<C>`, not
/// `a :: B < C >`).
pub(crate) fn display(tokens: impl ToTokens) -> String {
    let text = tokens.to_token_stream().to_string();
    let mut out = String::with_capacity(text.len());
    let mut previous: Option<&str> = None;
    for word in text.split(' ') {
        if let Some(previous) = previous {
            let after_opener = previous.ends_with([':', '<', '&']);
            // `mut ::a::B` keeps its space; `a ::B` does not.
            let keyword = matches!(previous, "mut" | "dyn" | "impl" | "as" | "for" | "const");
            let before_closer = word.starts_with([':', '<', '>', ',']) && !keyword;
            if !(after_opener || before_closer) {
                out.push(' ');
            }
        }
        out.push_str(word);
        previous = Some(word);
    }
    out
}

/// The hook or event a method that is neither was probably meant to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Misspelling {
    /// A `before_`/`after_` name that is no hook, with the nearest hook if any.
    UnknownHook(Option<&'static str>),
    /// A name a typo away from a hook or an event.
    Near(&'static str),
}

impl Misspelling {
    fn message(&self, name: &str) -> String {
        let hooks: Vec<String> = HOOKS.iter().map(|h| format!("`{h}`")).collect();
        match self {
            Misspelling::UnknownHook(suggestion) => {
                let suggestion = suggestion
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                format!(
                    "unknown hook `{name}`{suggestion}\nthe hooks are {}; \
                     a helper method's name cannot start with `before_` or `after_`",
                    hooks.join(", ")
                )
            }
            Misspelling::Near(hook) if HOOKS.contains(hook) => format!(
                "`{name}` is not a hook; did you mean `{hook}`?\n\
                 to keep it as a helper method, give it a name less like a hook's"
            ),
            Misspelling::Near(event) => format!(
                "`{name}` is not an event; did you mean `{event}`? (`async fn {event}` replaces its handling)\n\
                 to keep it as a helper method, give it a name less like an event's"
            ),
        }
    }
}

/// Names with a hook's prefix are taken (`before_save` is an error), and so
/// are names a typo or two away from a hook or an event (`befor_update`,
/// `update`): a hook that silently never runs is worse than a renamed helper.
pub(crate) fn misspelling(name: &str) -> Option<Misspelling> {
    let nearest = |candidates: &mut dyn Iterator<Item = &'static str>, max: usize| {
        candidates
            .map(|c| (strsim::damerau_levenshtein(name, c), c))
            .filter(|&(distance, c)| distance <= max && distance * 4 <= c.len())
            .min_by_key(|&(distance, _)| distance)
            .map(|(_, c)| c)
    };
    if name.starts_with("before_") || name.starts_with("after_") {
        return Some(Misspelling::UnknownHook(nearest(
            &mut HOOKS.iter().copied(),
            3,
        )));
    }
    nearest(&mut HOOKS.iter().chain(EVENTS).copied(), 2).map(Misspelling::Near)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_hooks_are_caught() {
        use Misspelling::*;
        assert_eq!(misspelling("befor_update"), Some(Near("before_update")));
        assert_eq!(
            misspelling("after_udpate"),
            Some(UnknownHook(Some("after_update")))
        );
        assert_eq!(
            misspelling("before_updat"),
            Some(UnknownHook(Some("before_update")))
        );
        assert_eq!(misspelling("before_save"), Some(UnknownHook(None)));
        assert_eq!(misspelling("aftr_destroy"), Some(Near("after_destroy")));
        assert_eq!(misspelling("update"), Some(Near("updated")));
        assert_eq!(misspelling("destroy"), Some(Near("destroyed")));
        assert_eq!(misspelling("create"), Some(Near("created")));
    }

    #[test]
    fn helpers_far_from_hooks_are_left_alone() {
        for helper in [
            "normalize",
            "audit",
            "deleted",
            "upsert",
            "after",
            "creator_of",
            "new",
        ] {
            assert_eq!(misspelling(helper), None, "{helper}");
        }
    }

    #[test]
    fn display_closes_the_gaps_quote_leaves() {
        let ty: Type = syn::parse_quote!(crate::models::User<'static, Vec<u8>>);
        assert_eq!(display(&ty), "crate::models::User<'static, Vec<u8>>");
        let ty: Type = syn::parse_quote!(&mut ::outbox::Context<'_>);
        assert_eq!(display(&ty), "&mut ::outbox::Context<'_>");
        let ty: Type = syn::parse_quote!(&<User as Outboxed>::Key);
        assert_eq!(display(&ty), "&<User as Outboxed>::Key");
    }

    #[test]
    fn expected_signatures_name_the_model() {
        assert_eq!(
            Shape::ModelByValue.expected("before_update", "User"),
            "expected `async fn before_update(&self, ctx: &mut Context<'_>, model: User) -> Result<User, HandlerError>`"
        );
        assert_eq!(
            Shape::KeyByRef.expected("after_destroy", "User"),
            "expected `async fn after_destroy(&self, ctx: &mut Context<'_>, key: &<User as Outboxed>::Key) -> Result<(), HandlerError>`"
        );
    }
}
