//! Helpers for reading `key = value` attributes: each key once, values of the
//! right kind, unknown keys answered with the valid ones.

use proc_macro2::{Delimiter, Span, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::parse::discouraged::Speculative;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitInt, LitStr, Token};

use crate::ctxt::Ctxt;

/// A value given at most once; a second occurrence is an error at its key.
pub(crate) struct Attr<T> {
    name: &'static str,
    value: Option<T>,
}

impl<T> Attr<T> {
    pub(crate) fn none(name: &'static str) -> Self {
        Attr { name, value: None }
    }

    pub(crate) fn set(&mut self, cx: &Ctxt, key: &syn::Path, value: T) {
        if self.value.is_some() {
            cx.error_spanned_by(key, format!("duplicate `{}` key", self.name));
        } else {
            self.value = Some(value);
        }
    }

    pub(crate) fn get(self) -> Option<T> {
        self.value
    }
}

/// The key of a nested meta item as a string (`topic` in `topic = ".."`).
pub(crate) fn key_name(meta: &ParseNestedMeta<'_>) -> String {
    meta.path
        .get_ident()
        .map_or_else(|| path_to_string(&meta.path), ToString::to_string)
}

pub(crate) fn path_to_string(path: &syn::Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let lead = if path.leading_colon.is_some() {
        "::"
    } else {
        ""
    };
    format!("{lead}{}", segments.join("::"))
}

/// Records "unknown key" with the nearest valid key, and skips the key's value so
/// parsing goes on with the next key. Gives the suggested key, if any.
pub(crate) fn unknown_key(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    what: &str,
    valid: &[&'static str],
) -> syn::Result<Option<&'static str>> {
    let name = key_name(meta);
    let listed: Vec<String> = valid.iter().map(|k| format!("`{k}`")).collect();
    let nearest = valid
        .iter()
        .map(|k| (strsim::jaro_winkler(&name, k), *k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k);
    let suggestion = nearest
        .map(|k| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    cx.error_spanned_by(
        &meta.path,
        format!(
            "unknown {what} key `{name}`{suggestion}\nexpected one of: {}",
            listed.join(", ")
        ),
    );
    skip_value(meta)?;
    Ok(nearest)
}

/// Consumes whatever follows a key: `= tokens` up to the next comma, or `(..)`.
pub(crate) fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let value = meta.value()?;
        skip_to_comma(value)
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        // A buffer dropped with tokens left reports them as unexpected.
        content.parse::<proc_macro2::TokenStream>()?;
        Ok(())
    } else {
        Ok(())
    }
}

fn skip_to_comma(input: ParseStream<'_>) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// Parses a value with `parse`, looking inside the invisible groups a
/// `macro_rules!` fragment arrives in (`$topic:literal`, `$key:expr`,
/// `$with:path`, `$model:ty`, …), so a value passed to a generator reads like
/// one written out, as serde and diesel read theirs. The value's own tokens
/// come back, so errors point at what the user wrote. A group that is only
/// the start of a longer value (`$module::helper`) is left to `parse`.
pub(crate) fn ungrouped<T, F>(input: ParseStream<'_>, parse: F) -> syn::Result<T>
where
    F: Fn(ParseStream<'_>) -> syn::Result<T> + Copy,
{
    let whole_value = |rest: syn::buffer::Cursor<'_>| {
        rest.eof()
            || rest
                .punct()
                .is_some_and(|(punct, _)| punct.as_char() == ',')
    };
    if let Some((TokenTree::Group(group), rest)) = input.cursor().token_tree()
        && group.delimiter() == Delimiter::None
        && whole_value(rest)
    {
        input.parse::<TokenTree>()?;
        let inner = move |input: ParseStream<'_>| ungrouped(input, parse);
        return inner.parse2(group.stream());
    }
    parse(input)
}

/// The value after `key =` as an expression, for checking its kind.
fn value_expr(meta: &ParseNestedMeta<'_>, key: &str, expected: &str) -> syn::Result<Expr> {
    value(meta, key, expected, Expr::parse)
}

/// The value after `key =`, parsed by `parse` through [`ungrouped`].
pub(crate) fn value<T, F>(
    meta: &ParseNestedMeta<'_>,
    key: &str,
    expected: &str,
    parse: F,
) -> syn::Result<T>
where
    F: Fn(ParseStream<'_>) -> syn::Result<T> + Copy,
{
    if !meta.input.peek(Token![=]) {
        return Err(meta.error(format!("expected `{key} = {expected}`")));
    }
    ungrouped(meta.value()?, parse)
}

/// `key = "string"`.
pub(crate) fn lit_str(meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<LitStr> {
    match value_expr(meta, key, "\"...\"")? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s),
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected a string literal: `{key} = \"...\"`"),
        )),
    }
}

/// `key = 2`: a version number, at least 1.
pub(crate) fn version(meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<(u32, Span)> {
    match value_expr(meta, key, "<version>")? {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => version_of(&int),
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected a version number: `{key} = 2`"),
        )),
    }
}

pub(crate) fn version_of(int: &LitInt) -> syn::Result<(u32, Span)> {
    if !int.suffix().is_empty() {
        return Err(syn::Error::new(
            int.span(),
            format!(
                "a version is a plain number: `{}`, without `{}`",
                int.base10_digits(),
                int.suffix()
            ),
        ));
    }
    let value: u32 = int.base10_parse().map_err(|_| {
        syn::Error::new(int.span(), format!("version numbers go up to {}", u32::MAX))
    })?;
    if value == 0 {
        return Err(syn::Error::new(int.span(), "versions start at 1"));
    }
    Ok((value, int.span()))
}

/// `key = [1, 2]`: the literals with their spans, unvalidated (order, duplicates
/// and zero are checked by the caller, each at its own literal).
pub(crate) fn int_list(meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<(Vec<LitInt>, Span)> {
    // Parsed here rather than as an `Expr::Array`, so each element is read
    // through `ungrouped` too (`versions = [$($version:literal),*]`).
    let list = |input: ParseStream<'_>| -> syn::Result<(Vec<Expr>, Span)> {
        let elements = |input: ParseStream<'_>| -> syn::Result<(Vec<Expr>, Span)> {
            let content;
            let brackets = syn::bracketed!(content in input);
            let element = |input: ParseStream<'_>| ungrouped(input, Expr::parse);
            let elements = Punctuated::<Expr, Token![,]>::parse_terminated_with(&content, element)?;
            Ok((elements.into_iter().collect(), brackets.span.join()))
        };
        let fork = input.fork();
        if let Ok(list) = elements(&fork) {
            input.advance_to(&fork);
            return Ok(list);
        }
        let other: Expr = input.parse()?;
        Err(syn::Error::new_spanned(
            other,
            format!("expected a list of versions: `{key} = [1, 2]`"),
        ))
    };
    let (elements, span) = value(meta, key, "[1, 2]", list)?;
    let mut ints = Vec::new();
    for element in elements {
        match element {
            Expr::Lit(ExprLit {
                lit: Lit::Int(int), ..
            }) => ints.push(int),
            other => {
                return Err(syn::Error::new_spanned(
                    other,
                    "expected a version number (1, 2, …)",
                ));
            }
        }
    }
    Ok((ints, span))
}

/// `key = path::to::item` (or serde's style, `key = "path::to::item"`).
pub(crate) fn path(meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<syn::Path> {
    match value_expr(meta, key, "path::to::item")? {
        Expr::Path(expr) if expr.qself.is_none() => Ok(expr.path),
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => s
            .parse_with(syn::Path::parse_mod_style)
            .or_else(|_| s.parse()),
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected a path: `{key} = path::to::item`"),
        )),
    }
}

/// What a path key expects, for its errors, and which lone path keywords name
/// such an item.
#[derive(Clone, Copy)]
pub(crate) struct Expects {
    /// Completes "`key` expects …": `a path to a function`.
    pub(crate) what: &'static str,
    /// The keywords that, alone, are such a path (`crate` is a crate's root).
    pub(crate) keywords: &'static [&'static str],
}

/// A function to call (`default`, `partition_key_with`, `payload_with`): no
/// lone keyword names one, and the derive would emit `crate()`.
pub(crate) const FUNCTION: Expects = Expects {
    what: "a path to a function",
    keywords: &[],
};

/// The keywords that name a module on their own.
pub(crate) const MODULE_KEYWORDS: &[&str] = &["crate", "self", "super"];

/// A Diesel table (`#[diesel(table_name)]`, the controller's `table`): the
/// module `table!` declares, never a keyword, and its name is the default route.
pub(crate) const TABLE: Expects = Expects {
    what: "a path to a Diesel table (`schema::users`)",
    keywords: &[],
};

/// `key = path::to::fn`: a path, refusing a lone path keyword where it cannot
/// be what the key names. Without this, `default = crate` would pass and
/// rustc would report the generated `crate()` ("expected `!`") instead of the
/// key.
pub(crate) fn item_path(
    meta: &ParseNestedMeta<'_>,
    key: &str,
    expects: Expects,
) -> syn::Result<syn::Path> {
    let path = path(meta, key)?;
    match lone_keyword(&path) {
        Some(keyword) if !expects.keywords.contains(&keyword.to_string().as_str()) => {
            Err(syn::Error::new_spanned(
                &path,
                format!(
                    "`{key}` expects {}, found the keyword `{keyword}`",
                    expects.what
                ),
            ))
        }
        _ => Ok(path),
    }
}

/// The keyword when `path` is only `crate`, `self`, `super` or `Self`.
pub(crate) fn lone_keyword(path: &syn::Path) -> Option<&syn::Ident> {
    let ident = path.get_ident()?;
    ["crate", "self", "super", "Self"]
        .contains(&ident.to_string().as_str())
        .then_some(ident)
}

/// `key = field_name` (or `key = "field_name"`).
pub(crate) fn ident(meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<syn::Ident> {
    match value_expr(meta, key, "field_name")? {
        Expr::Path(expr) if expr.qself.is_none() && expr.path.get_ident().is_some() => {
            Ok(expr.path.get_ident().cloned().expect("checked above"))
        }
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => s.parse(),
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected a field name: `{key} = field_name`"),
        )),
    }
}

/// Records `result`'s error and skips the rest of the key's value, so one bad
/// value does not hide the errors after it.
pub(crate) fn record<T>(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    result: syn::Result<T>,
) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(error) => {
            cx.syn_error(error);
            // Whatever the failed parse left of this value is not worth a second error.
            let _ = skip_to_comma(meta.input);
            None
        }
    }
}

/// Kafka's rule for topic names: 1 to 249 characters of `[a-zA-Z0-9._-]`, not
/// `.` or `..` (the runtime's `Message::check_topic` applies the same rule).
pub(crate) fn check_topic(topic: &str) -> Result<(), String> {
    check_name(crate::symbol::TOPIC, topic)?;
    if topic == "." || topic == ".." {
        return Err(format!(
            "`topic` is `{topic}`; Kafka does not allow `.` or `..` as a topic name"
        ));
    }
    if topic.len() > 249 {
        return Err(format!(
            "`topic` is {} characters long; Kafka allows 249",
            topic.len()
        ));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "`topic` contains {c:?}; Kafka topic names use only ASCII letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

/// Routes and wire names: not empty, no whitespace or control characters.
pub(crate) fn check_name(key: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("`{key}` must not be empty"));
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{key}` must not contain whitespace or control characters, found {c:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proc_macro2::{Group, TokenStream};
    use quote::{ToTokens, quote};

    use super::*;

    /// `tokens` as a `macro_rules!` fragment arrives: in an invisible group.
    fn fragment(tokens: TokenStream) -> TokenStream {
        Group::new(Delimiter::None, tokens).into_token_stream()
    }

    /// Runs `read` on the value of the one key in `args`.
    fn read<T>(
        args: TokenStream,
        read: impl Fn(&ParseNestedMeta<'_>) -> syn::Result<T>,
    ) -> syn::Result<T> {
        let mut value = None;
        syn::meta::parser(|meta| {
            value = Some(read(&meta)?);
            Ok(())
        })
        .parse2(args)?;
        Ok(value.expect("one key"))
    }

    #[test]
    fn values_are_read_inside_invisible_groups() {
        let topic = fragment(fragment(quote!("accounts")));
        let lit = read(quote!(topic = #topic), |m| lit_str(m, "topic")).unwrap();
        assert_eq!(lit.value(), "accounts");

        let version = fragment(quote!(2));
        let (version, _) = read(quote!(since = #version), |m| self::version(m, "since")).unwrap();
        assert_eq!(version, 2);

        let path = fragment(quote!(chrono::serde::ts_seconds));
        let path = read(quote!(with = #path), |m| self::path(m, "with")).unwrap();
        assert_eq!(path_to_string(&path), "chrono::serde::ts_seconds");

        let field = fragment(quote!(email));
        let field = read(quote!(partition_key = #field), |m| {
            ident(m, "partition_key")
        })
        .unwrap();
        assert_eq!(field, "email");
    }

    #[test]
    fn version_lists_are_read_inside_invisible_groups() {
        let (one, two) = (fragment(quote!(1)), fragment(quote!(2)));
        for list in [quote!([#one, #two]), fragment(quote!([1, #two]))] {
            let (ints, _) = read(quote!(versions = #list), |m| int_list(m, "versions")).unwrap();
            let ints: Vec<u32> = ints.iter().map(|i| i.base10_parse().unwrap()).collect();
            assert_eq!(ints, [1, 2]);
        }
    }

    #[test]
    fn a_group_starting_a_longer_value_is_left_to_the_parser() {
        let module = fragment(quote!(helpers));
        let path = read(quote!(with = #module::ts), |m| self::path(m, "with")).unwrap();
        // syn joins the group and the rest into one path.
        assert_eq!(path_to_string(&path), "helpers::ts");
    }

    #[test]
    fn a_lone_path_keyword_is_refused_where_it_names_nothing() {
        for keyword in ["crate", "self", "super", "Self"] {
            let keyword: TokenStream = keyword.parse().unwrap();
            for value in [keyword.clone(), fragment(keyword.clone())] {
                let error = read(quote!(default = #value), |m| {
                    item_path(m, "default", FUNCTION).map(drop)
                })
                .unwrap_err();
                assert_eq!(
                    error.to_string(),
                    format!(
                        "`default` expects a path to a function, found the keyword `{keyword}`"
                    )
                );
            }
            let quoted = LitStr::new(&keyword.to_string(), Span::call_site());
            assert!(
                read(quote!(default = #quoted), |m| item_path(
                    m, "default", FUNCTION
                ))
                .is_err()
            );
        }
    }

    #[test]
    fn paths_starting_with_a_keyword_and_module_keywords_are_kept() {
        for value in [
            quote!(crate::ids::next),
            quote!(Self::new),
            quote!(super::f),
        ] {
            let path = read(quote!(default = #value), |m| {
                item_path(m, "default", FUNCTION)
            });
            assert!(path.is_ok(), "{value}");
        }
        let module = Expects {
            what: "a module",
            keywords: MODULE_KEYWORDS,
        };
        for keyword in ["crate", "self", "super"] {
            let keyword: TokenStream = keyword.parse().unwrap();
            let path = read(quote!(with = #keyword), |m| item_path(m, "with", module)).unwrap();
            assert_eq!(path_to_string(&path), keyword.to_string());
        }
        let error = read(quote!(with = Self), |m| {
            item_path(m, "with", module).map(drop)
        });
        assert_eq!(
            error.unwrap_err().to_string(),
            "`with` expects a module, found the keyword `Self`"
        );
    }

    #[test]
    fn wrong_kinds_are_still_refused_inside_groups() {
        let number = fragment(quote!(42));
        let error = read(quote!(topic = #number), |m| lit_str(m, "topic").map(drop)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "expected a string literal: `topic = \"...\"`"
        );
        let repeat = quote!([1; 3]);
        let error = read(quote!(versions = #repeat), |m| {
            int_list(m, "versions").map(drop)
        })
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "expected a list of versions: `versions = [1, 2]`"
        );
    }
}
