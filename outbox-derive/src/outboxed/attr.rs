//! `#[outbox(..)]` and the `#[diesel(..)]` keys the derive reads, as typed values.

use proc_macro2::{Span, TokenTree};
use syn::spanned::Spanned;
use syn::{Ident, LitInt, LitStr, Path};

use crate::attr_util::{
    self, Attr, Expects, FUNCTION, MODULE_KEYWORDS, TABLE, check_name, check_topic, key_name,
    record,
};
use crate::ctxt::Ctxt;
use crate::symbol::*;

/// `crate = ..`: where `outbox` is; `crate = crate` when the crate root re-exports it.
const CRATE_PATH: Expects = Expects {
    what: "a path to the `outbox` crate",
    keywords: MODULE_KEYWORDS,
};

/// `with = ..`: a module, as serde's; `with = self` when the functions are beside the model.
const WITH_MODULE: Expects = Expects {
    what: "a path to a module with `serialize` and `deserialize` functions",
    keywords: MODULE_KEYWORDS,
};

/// What a destroyed message carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destroyed {
    /// Only the primary-key fields (the default).
    Keys,
    /// The whole payload, as for created and updated.
    Full,
}

/// `avro` / `avro(name = "..", namespace = "..")` on the struct.
pub(crate) struct AvroAttrs {
    pub(crate) name: Option<LitStr>,
    pub(crate) namespace: Option<LitStr>,
}

/// The struct's attributes.
pub(crate) struct ContainerAttrs {
    pub(crate) topic: Option<LitStr>,
    pub(crate) route: Option<LitStr>,
    pub(crate) versions: Option<(Vec<LitInt>, Span)>,
    pub(crate) partition_key: Option<Ident>,
    pub(crate) partition_key_with: Option<Path>,
    pub(crate) destroyed: Option<Destroyed>,
    pub(crate) payload_with: Option<Path>,
    pub(crate) avro: Option<AvroAttrs>,
    /// `format = ".."`: what goes on the wire.
    pub(crate) format: Option<LitStr>,
    pub(crate) krate: Option<Path>,
    /// `#[diesel(table_name = ..)]`.
    pub(crate) table_name: Option<Path>,
    /// `#[diesel(primary_key(..))]`.
    pub(crate) primary_key: Option<Vec<Ident>>,
    /// Keys given with a bad value or misspelt: already reported, so not "missing" too.
    pub(crate) attempted: Vec<&'static str>,
}

/// How a field gets a value when a version does not carry it.
#[derive(Clone)]
pub(crate) enum FieldDefault {
    /// `default`: `Default::default()`.
    Trait,
    /// `default = path`: `path()`.
    Path(Path),
}

/// A field's attributes.
pub(crate) struct FieldAttrs {
    pub(crate) skip: Option<Span>,
    pub(crate) rename: Option<LitStr>,
    /// `rename(v1 = "..")`: version, the `v1` token's span, name.
    pub(crate) rename_versions: Vec<(u32, Span, LitStr)>,
    pub(crate) since: Option<(u32, Span)>,
    pub(crate) until: Option<(u32, Span)>,
    pub(crate) with: Option<Path>,
    pub(crate) default: Option<FieldDefault>,
    pub(crate) avro_type: Option<LitStr>,
    /// The `avro_type` key, for errors about giving it at all.
    pub(crate) avro_type_key: Option<Span>,
    /// The `default` key, for errors about giving it at all.
    pub(crate) default_key: Option<Span>,
    /// `version`: the key's span.
    pub(crate) version: Option<Span>,
    /// `#[diesel(column_name = ..)]`.
    pub(crate) column_name: Option<Ident>,
}

impl ContainerAttrs {
    pub(crate) fn from_ast(cx: &Ctxt, attrs: &[syn::Attribute]) -> Self {
        let mut topic = Attr::none(TOPIC);
        let mut route = Attr::none(ROUTE);
        let mut versions = Attr::none(VERSIONS);
        let mut partition_key = Attr::none(PARTITION_KEY);
        let mut partition_key_with = Attr::none(PARTITION_KEY_WITH);
        let mut destroyed = Attr::none(DESTROYED);
        let mut payload_with = Attr::none(PAYLOAD_WITH);
        let mut avro = Attr::none(AVRO);
        let mut format = Attr::none(FORMAT);
        let mut krate = Attr::none(CRATE);
        let mut table_name = Attr::none(TABLE_NAME);
        let mut primary_key = Attr::none(PRIMARY_KEY);
        let mut attempted = Vec::new();

        for attr in attrs {
            if attr.path().is_ident(OUTBOX) {
                let parsed = attr.parse_nested_meta(|meta| {
                    let key = key_name(&meta);
                    if let Some(known) = CONTAINER_KEYS.iter().find(|k| **k == key) {
                        attempted.push(*known);
                    }
                    match key.as_str() {
                        TOPIC => {
                            if let Some(v) = record(cx, &meta, attr_util::lit_str(&meta, TOPIC)) {
                                if let Err(reason) = check_topic(&v.value()) {
                                    cx.error_spanned_by(&v, reason);
                                }
                                topic.set(cx, &meta.path, v);
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
                        VERSIONS => {
                            if let Some(v) = record(cx, &meta, attr_util::int_list(&meta, VERSIONS))
                            {
                                versions.set(cx, &meta.path, v);
                            }
                        }
                        PARTITION_KEY => {
                            if let Some(v) =
                                record(cx, &meta, attr_util::ident(&meta, PARTITION_KEY))
                            {
                                partition_key.set(cx, &meta.path, v);
                            }
                        }
                        PARTITION_KEY_WITH => {
                            if let Some(v) = record(
                                cx,
                                &meta,
                                attr_util::item_path(&meta, PARTITION_KEY_WITH, FUNCTION),
                            ) {
                                partition_key_with.set(cx, &meta.path, v);
                            }
                        }
                        DESTROYED => {
                            if let Some(v) = record(cx, &meta, attr_util::lit_str(&meta, DESTROYED))
                            {
                                match v.value().as_str() {
                                    "keys" => destroyed.set(cx, &meta.path, Destroyed::Keys),
                                    "full" => destroyed.set(cx, &meta.path, Destroyed::Full),
                                    _ => cx.error_spanned_by(
                                        &v,
                                        "expected `destroyed = \"keys\"` or `destroyed = \"full\"`",
                                    ),
                                }
                            }
                        }
                        PAYLOAD_WITH => {
                            if let Some(v) = record(
                                cx,
                                &meta,
                                attr_util::item_path(&meta, PAYLOAD_WITH, FUNCTION),
                            ) {
                                payload_with.set(cx, &meta.path, v);
                            }
                        }
                        AVRO => avro.set(cx, &meta.path, avro_attrs(cx, &meta)?),
                        FORMAT => {
                            if let Some(v) = record(cx, &meta, attr_util::lit_str(&meta, FORMAT)) {
                                format.set(cx, &meta.path, v);
                            }
                        }
                        CRATE => {
                            if let Some(v) =
                                record(cx, &meta, attr_util::item_path(&meta, CRATE, CRATE_PATH))
                            {
                                krate.set(cx, &meta.path, v);
                            }
                        }
                        _ => attempted.extend(attr_util::unknown_key(
                            cx,
                            &meta,
                            "`outbox`",
                            CONTAINER_KEYS,
                        )?),
                    }
                    Ok(())
                });
                if let Err(e) = parsed {
                    cx.syn_error(e);
                    // `#[outbox]` without a list: one error is enough, not "missing topic" too.
                    attempted.extend([TOPIC, ROUTE]);
                }
            } else if attr.path().is_ident(DIESEL) {
                // Diesel's own derives validate its keys; read two, skip the rest quietly.
                let parsed = attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident(TABLE_NAME) {
                        match record(cx, &meta, attr_util::item_path(&meta, TABLE_NAME, TABLE)) {
                            Some(v) => table_name.set(cx, &meta.path, v),
                            // Reported: the route it would give is not "missing" too.
                            None => attempted.push(ROUTE),
                        }
                    } else if meta.path.is_ident(PRIMARY_KEY) {
                        let mut keys = Vec::new();
                        meta.parse_nested_meta(|key| {
                            match key.path.get_ident() {
                                Some(ident) => keys.push(ident.clone()),
                                None => cx.error_spanned_by(&key.path, "expected a field name"),
                            }
                            Ok(())
                        })?;
                        primary_key.set(cx, &meta.path, keys);
                    } else {
                        attr_util::skip_value(&meta)?;
                    }
                    Ok(())
                });
                if let Err(e) = parsed {
                    cx.syn_error(e);
                }
            }
        }

        ContainerAttrs {
            topic: topic.get(),
            route: route.get(),
            versions: versions.get(),
            partition_key: partition_key.get(),
            partition_key_with: partition_key_with.get(),
            destroyed: destroyed.get(),
            payload_with: payload_with.get(),
            avro: avro.get(),
            format: format.get(),
            krate: krate.get(),
            table_name: table_name.get(),
            primary_key: primary_key.get(),
            attempted,
        }
    }
}

impl FieldAttrs {
    pub(crate) fn from_ast(cx: &Ctxt, attrs: &[syn::Attribute]) -> Self {
        let mut skip = Attr::none(SKIP);
        let mut rename = Attr::none(RENAME);
        let mut rename_versions: Vec<(u32, Span, LitStr)> = Vec::new();
        let mut since = Attr::none(SINCE);
        let mut until = Attr::none(UNTIL);
        let mut with = Attr::none(WITH);
        let mut default = Attr::none(DEFAULT);
        let mut avro_type = Attr::none(AVRO_TYPE);
        let mut version = Attr::none(VERSION);
        let mut default_key = None;
        let column_name = attrs
            .iter()
            .filter(|a| a.path().is_ident(DIESEL))
            .find_map(diesel_column_name);

        for attr in attrs.iter().filter(|a| a.path().is_ident(OUTBOX)) {
            let parsed = attr.parse_nested_meta(|meta| {
                let key = key_name(&meta);
                match key.as_str() {
                    SKIP => {
                        if meta.input.peek(syn::Token![=]) || meta.input.peek(syn::token::Paren) {
                            cx.error_spanned_by(&meta.path, "`skip` takes no value: `#[outbox(skip)]`");
                            attr_util::skip_value(&meta)?;
                        }
                        skip.set(cx, &meta.path, meta.path.span());
                    }
                    RENAME if meta.input.peek(syn::token::Paren) => {
                        meta.parse_nested_meta(|version| {
                            let name = key_name(&version);
                            let number = name
                                .strip_prefix('v')
                                .and_then(|n| n.parse::<u32>().ok())
                                .filter(|n| *n > 0 && !name.starts_with("v0"));
                            let value = record(cx, &version, attr_util::lit_str(&version, &name));
                            if let Some(value) = &value
                                && let Err(reason) = check_name(RENAME, &value.value())
                            {
                                cx.error_spanned_by(value, reason);
                            }
                            let Some(number) = number else {
                                cx.error_spanned_by(
                                    &version.path,
                                    format!("expected a version like `v1` or `v2`, found `{name}`: `rename(v1 = \"...\")`"),
                                );
                                return Ok(());
                            };
                            let Some(value) = value else { return Ok(()) };
                            if rename_versions.iter().any(|(v, _, _)| *v == number) {
                                cx.error_spanned_by(&version.path, format!("duplicate `rename(v{number})`"));
                            } else {
                                rename_versions.push((number, version.path.span(), value));
                            }
                            Ok(())
                        })?;
                    }
                    RENAME => {
                        if let Some(v) = record(cx, &meta, attr_util::lit_str(&meta, RENAME)) {
                            if let Err(reason) = check_name(RENAME, &v.value()) {
                                cx.error_spanned_by(&v, reason);
                            }
                            rename.set(cx, &meta.path, v);
                        }
                    }
                    SINCE => {
                        if let Some(v) = record(cx, &meta, attr_util::version(&meta, SINCE)) {
                            since.set(cx, &meta.path, v);
                        }
                    }
                    UNTIL => {
                        if let Some(v) = record(cx, &meta, attr_util::version(&meta, UNTIL)) {
                            until.set(cx, &meta.path, v);
                        }
                    }
                    WITH => {
                        if let Some(v) = record(cx, &meta, attr_util::item_path(&meta, WITH, WITH_MODULE)) {
                            with.set(cx, &meta.path, v);
                        }
                    }
                    DEFAULT => {
                        default_key.get_or_insert(meta.path.span());
                        if meta.input.peek(syn::Token![=]) {
                            if let Some(v) = record(cx, &meta, attr_util::item_path(&meta, DEFAULT, FUNCTION)) {
                                default.set(cx, &meta.path, FieldDefault::Path(v));
                            }
                        } else {
                            default.set(cx, &meta.path, FieldDefault::Trait);
                        }
                    }
                    AVRO_TYPE => {
                        if let Some(v) = record(cx, &meta, attr_util::lit_str(&meta, AVRO_TYPE)) {
                            avro_type.set(cx, &meta.path, (meta.path.span(), v));
                        }
                    }
                    VERSION => {
                        if meta.input.peek(syn::Token![=]) || meta.input.peek(syn::token::Paren) {
                            cx.error_spanned_by(
                                &meta.path,
                                "`version` takes no value: `#[outbox(version)]` marks the field \
                                 that counts the row's changes",
                            );
                            attr_util::skip_value(&meta)?;
                        }
                        version.set(cx, &meta.path, meta.path.span());
                    }
                    _ => {
                        attr_util::unknown_key(cx, &meta, "`outbox` field", FIELD_KEYS)?;
                    }
                }
                Ok(())
            });
            if let Err(e) = parsed {
                cx.syn_error(e);
            }
        }

        let avro_type = avro_type.get();
        FieldAttrs {
            skip: skip.get(),
            rename: rename.get(),
            rename_versions,
            since: since.get(),
            until: until.get(),
            with: with.get(),
            default: default.get(),
            avro_type_key: avro_type.as_ref().map(|(key, _)| *key),
            avro_type: avro_type.map(|(_, v)| v),
            default_key,
            version: version.get(),
            column_name,
        }
    }
}

/// `column_name = name` in a field's `#[diesel(..)]`, found among the
/// attribute's top-level tokens rather than parsed key by key: Diesel checks
/// its own keys, and some of their values (`serialize_as = Wrapper<A, B>`)
/// would stop a key-by-key parser before it gets there.
fn diesel_column_name(attr: &syn::Attribute) -> Option<Ident> {
    let syn::Meta::List(list) = &attr.meta else {
        return None;
    };
    let tokens: Vec<TokenTree> = list.tokens.clone().into_iter().collect();
    tokens.windows(3).enumerate().find_map(|(at, window)| {
        let [TokenTree::Ident(key), TokenTree::Punct(eq), value] = window else {
            return None;
        };
        let starts_a_key =
            at == 0 || matches!(&tokens[at - 1], TokenTree::Punct(p) if p.as_char() == ',');
        (starts_a_key && key == COLUMN_NAME && eq.as_char() == '=')
            .then(|| column_ident(value))
            .flatten()
    })
}

/// A column name: an identifier, or one in a string or a `macro_rules!` fragment.
fn column_ident(value: &TokenTree) -> Option<Ident> {
    match value {
        TokenTree::Ident(ident) => Some(ident.clone()),
        TokenTree::Literal(_) => syn::parse2::<LitStr>(value.clone().into())
            .ok()?
            .parse()
            .ok(),
        TokenTree::Group(group) if group.delimiter() == proc_macro2::Delimiter::None => {
            let mut inner = group.stream().into_iter();
            match (inner.next(), inner.next()) {
                (Some(only), None) => column_ident(&only),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The value of `avro`: nothing, or a `(name = "..", namespace = "..")` list.
/// Only the syntax is read here; validation checks the names.
fn avro_attrs(cx: &Ctxt, meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<AvroAttrs> {
    let mut name = Attr::none(NAME);
    let mut namespace = Attr::none(NAMESPACE);
    if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| {
            match key_name(&inner).as_str() {
                NAME => {
                    if let Some(v) = record(cx, &inner, attr_util::lit_str(&inner, NAME)) {
                        name.set(cx, &inner.path, v);
                    }
                }
                NAMESPACE => {
                    if let Some(v) = record(cx, &inner, attr_util::lit_str(&inner, NAMESPACE)) {
                        namespace.set(cx, &inner.path, v);
                    }
                }
                _ => {
                    attr_util::unknown_key(cx, &inner, "`avro`", AVRO_KEYS)?;
                }
            }
            Ok(())
        })?;
    } else if meta.input.peek(syn::Token![=]) {
        cx.error_spanned_by(
            &meta.path,
            "`avro` takes a list or nothing: `#[outbox(avro)]` or \
             `#[outbox(avro(name = \"...\", namespace = \"...\"))]`",
        );
        attr_util::skip_value(meta)?;
    }
    // Kept even after a mistake above, so fields' `avro_type` are not reported
    // as needing `avro` too.
    Ok(AvroAttrs {
        name: name.get(),
        namespace: namespace.get(),
    })
}

#[cfg(test)]
mod tests {
    use proc_macro2::{Delimiter, Group, TokenStream};
    use quote::{ToTokens, quote};

    use super::*;

    fn column(args: TokenStream) -> Option<String> {
        let attr: syn::Attribute = syn::parse_quote!(#[diesel(#args)]);
        diesel_column_name(&attr).map(|ident| ident.to_string())
    }

    #[test]
    fn column_names_are_found_among_diesel_keys() {
        assert_eq!(column(quote!(column_name = rev)), Some("rev".into()));
        // A value with a top-level comma would stop a key-by-key parser.
        let after = quote!(serialize_as = Wrapper<A, B>, column_name = rev);
        assert_eq!(column(after), Some("rev".into()));
        assert_eq!(column(quote!(column_name = "rev")), Some("rev".into()));
        assert_eq!(column(quote!(column_name = r#type)), Some("r#type".into()));
        let fragment = Group::new(Delimiter::None, quote!(rev)).into_token_stream();
        assert_eq!(column(quote!(column_name = #fragment)), Some("rev".into()));
        assert_eq!(column(quote!(skip_insertion)), None);
        // Not a key of its own: nested, or a value.
        assert_eq!(column(quote!(other(column_name = rev))), None);
        assert_eq!(column(quote!(select_expression = column_name = rev)), None);
        assert_eq!(column(quote!(column_name = "not an ident")), None);
    }
}
