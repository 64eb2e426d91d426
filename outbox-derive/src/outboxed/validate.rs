//! Rules across attributes and fields; turns the parsed input into the model
//! expansion reads. Every broken rule is recorded, then parsing goes on.

use std::collections::BTreeMap;

use proc_macro2::Span;
use syn::{Ident, Path, Type, parse_quote};

use super::ast::{Container, Field};
use super::attr::{Destroyed, FieldDefault};
use crate::attr_util::version_of;
use crate::ctxt::Ctxt;

/// Everything expansion needs, already checked.
pub(crate) struct Model<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) krate: Path,
    pub(crate) topic: String,
    pub(crate) route: String,
    pub(crate) versions: Vec<u32>,
    pub(crate) partition_key: PartitionKey,
    /// Indices of the primary-key fields, in key order.
    pub(crate) key_fields: Vec<usize>,
    pub(crate) destroyed: Destroyed,
    pub(crate) payload_with: Option<Path>,
    pub(crate) fields: Vec<ModelField<'a>>,
}

pub(crate) enum PartitionKey {
    /// Fields joined with `:`.
    Fields(Vec<usize>),
    /// `fn(&Self) -> String`.
    With(Path),
}

pub(crate) struct ModelField<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    pub(crate) with: Option<Path>,
    pub(crate) default: Option<FieldDefault>,
    pub(crate) skip: bool,
    /// The wire name in each version that carries the field.
    pub(crate) wire: BTreeMap<u32, String>,
}

pub(crate) fn model<'a>(cx: &Ctxt, container: Container<'a>) -> Option<Model<'a>> {
    let attrs = &container.attrs;
    let ident = container.ident;

    let topic = match &attrs.topic {
        Some(topic) => topic.value(),
        None => {
            if !attrs.attempted.contains(&crate::symbol::TOPIC) {
                cx.error_spanned_by(ident, "missing `topic`: add `#[outbox(topic = \"...\")]`");
            }
            String::new()
        }
    };
    let route = match (&attrs.route, &attrs.table_name) {
        (Some(route), _) => route.value(),
        (None, Some(table)) => table
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default(),
        (None, None) if attrs.attempted.contains(&crate::symbol::ROUTE) => String::new(),
        (None, None) => {
            cx.error_spanned_by(
                ident,
                "missing route: add `#[outbox(route = \"...\")]` or `#[diesel(table_name = ...)]`",
            );
            String::new()
        }
    };
    let versions = versions(cx, attrs.versions.as_ref());
    let fields: Vec<ModelField<'a>> = container
        .fields
        .iter()
        .map(|field| model_field(cx, field, &versions))
        .collect();
    check_wire_names(cx, &container.fields, &fields);

    let key_fields = key_fields(cx, &container, &fields, &versions);
    let partition_key = partition_key(cx, &container, &fields, &key_fields);
    if let (Some(first), Some(_)) = (&attrs.partition_key, &attrs.partition_key_with) {
        cx.error_spanned_by(
            first,
            "give either `partition_key` or `partition_key_with`, not both",
        );
    }

    if cx.has_errors() {
        return None;
    }
    Some(Model {
        ident,
        krate: attrs
            .krate
            .clone()
            .unwrap_or_else(|| parse_quote!(::outbox)),
        topic,
        route,
        versions,
        partition_key,
        key_fields,
        destroyed: attrs.destroyed.unwrap_or(Destroyed::Keys),
        payload_with: attrs.payload_with.clone(),
        fields,
    })
}

/// `versions = [..]`: non-empty, each ≥ 1, ascending, unique; `[1]` when absent.
fn versions(cx: &Ctxt, given: Option<&(Vec<syn::LitInt>, Span)>) -> Vec<u32> {
    let Some((literals, span)) = given else {
        return vec![1];
    };
    if literals.is_empty() {
        cx.error_at(*span, "`versions` must not be empty: `versions = [1]`");
        return vec![1];
    }
    let mut versions: Vec<u32> = Vec::new();
    for literal in literals {
        let Ok((version, span)) = version_of(literal).map_err(|e| cx.syn_error(e)) else {
            continue;
        };
        if versions.contains(&version) {
            cx.error_at(span, format!("duplicate version {version}"));
        } else if let Some(&last) = versions.last().filter(|&&last| last > version) {
            cx.error_at(
                span,
                format!("versions must be ascending: {version} comes after {last}"),
            );
        } else {
            versions.push(version);
        }
    }
    if versions.is_empty() {
        versions.push(1);
    }
    versions
}

fn model_field<'a>(cx: &Ctxt, field: &Field<'a>, versions: &[u32]) -> ModelField<'a> {
    let attrs = &field.attrs;
    let declared = |version: u32, span: Span| {
        let known = versions.contains(&version);
        if !known {
            cx.error_at(
                span,
                format!("version {version} is not declared in `versions` (declared: {versions:?})"),
            );
        }
        known
    };
    let since = attrs.since.filter(|&(v, span)| declared(v, span));
    let until = attrs.until.filter(|&(v, span)| declared(v, span));
    if let Some((since_v, span)) = since
        && attrs.default.is_none()
        && attrs.skip.is_none()
        && versions.iter().any(|&v| v < since_v)
        // `since` after `until` is its own mistake, reported below.
        && until.is_none_or(|(until_v, _)| since_v <= until_v)
    {
        // Every message of an earlier version would fail to read.
        let name = field.ident.to_string();
        let name = name.strip_prefix("r#").unwrap_or(&name);
        cx.error_at(
            span,
            format!(
                "`since = {since_v}` without a default: versions before {since_v} do not carry \
                 field `{name}` and cannot be read; add `default` or `default = path`"
            ),
        );
    }
    for (version, span, _) in &attrs.rename_versions {
        declared(*version, *span);
    }

    let skip = attrs.skip.is_some();
    if skip {
        let ignored = [
            attrs.rename.as_ref().map(|r| ("rename", r.span())),
            attrs.rename_versions.first().map(|r| ("rename", r.1)),
            attrs.since.map(|s| ("since", s.1)),
            attrs.until.map(|u| ("until", u.1)),
            attrs
                .with
                .as_ref()
                .map(|w| ("with", syn::spanned::Spanned::span(w))),
        ];
        for (key, span) in ignored.into_iter().flatten() {
            cx.error_at(span, format!("`{key}` has no effect on a skipped field"));
        }
    }

    let name = field.ident.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name);
    let mut wire = BTreeMap::new();
    if !skip {
        for &version in versions {
            let after_since = since.is_none_or(|(s, _)| version >= s);
            let before_until = until.is_none_or(|(u, _)| version <= u);
            if after_since && before_until {
                let renamed = attrs
                    .rename_versions
                    .iter()
                    .find(|(v, _, _)| *v == version)
                    .map(|(_, _, name)| name.value())
                    .or_else(|| attrs.rename.as_ref().map(syn::LitStr::value));
                wire.insert(version, renamed.unwrap_or_else(|| name.to_owned()));
            }
        }
        // Since `since` and `until` name declared versions, only `since > until`
        // leaves a field without a version.
        if let (true, Some((since_v, span)), Some((until_v, _))) = (wire.is_empty(), since, until) {
            cx.error_at(
                span,
                format!(
                    "field `{name}` is carried by no version: `since = {since_v}` is after `until = {until_v}`; \
                     fix `since`/`until` or mark the field `#[outbox(skip)]`"
                ),
            );
        }
    }

    ModelField {
        ident: field.ident,
        ty: field.ty,
        with: attrs.with.clone(),
        default: attrs.default.clone(),
        skip,
        wire,
    }
}

/// Two fields may not share a wire name in one version.
fn check_wire_names(cx: &Ctxt, fields: &[Field<'_>], model: &[ModelField<'_>]) {
    let mut seen: BTreeMap<(u32, &str), &Ident> = BTreeMap::new();
    for (field, resolved) in fields.iter().zip(model) {
        for (version, name) in &resolved.wire {
            if let Some(first) = seen.get(&(*version, name.as_str())) {
                cx.error_spanned_by(
                    field.ident,
                    format!(
                        "field `{}` has the wire name `{name}` in version {version}, \
                         like field `{first}`; rename one of them",
                        field.ident
                    ),
                );
            } else {
                seen.insert((*version, name.as_str()), field.ident);
            }
        }
    }
}

/// The primary key: Diesel's `primary_key(..)`, else `id`. Every version must
/// carry it, since destroyed messages and consumers identify rows by it.
fn key_fields(
    cx: &Ctxt,
    container: &Container<'_>,
    model: &[ModelField<'_>],
    versions: &[u32],
) -> Vec<usize> {
    let declared: Vec<(String, Span, bool)> = match &container.attrs.primary_key {
        Some(keys) => keys
            .iter()
            .map(|k| (k.to_string(), k.span(), true))
            .collect(),
        None => vec![("id".to_owned(), container.ident.span(), false)],
    };
    let mut indices = Vec::new();
    for (name, span, explicit) in declared {
        let Some(index) = container.fields.iter().position(|f| *f.ident == name) else {
            if explicit {
                cx.error_at(
                    span,
                    format!("primary key `{name}` is not a field of this struct"),
                );
            } else {
                cx.error_at(
                    span,
                    "no primary key: the struct has no field `id`; \
                     name the key fields with `#[diesel(primary_key(...))]`",
                );
            }
            continue;
        };
        let field = &model[index];
        if field.skip {
            cx.error_spanned_by(
                field.ident,
                format!("primary key field `{name}` cannot be skipped: every message identifies its row by it"),
            );
        } else if field.wire.len() != versions.len() && !field.wire.is_empty() {
            cx.error_spanned_by(
                field.ident,
                format!("primary key field `{name}` must be carried by every version (destroyed messages carry only the key)"),
            );
        }
        indices.push(index);
    }
    indices
}

fn partition_key(
    cx: &Ctxt,
    container: &Container<'_>,
    model: &[ModelField<'_>],
    key_fields: &[usize],
) -> PartitionKey {
    if let Some(path) = &container.attrs.partition_key_with {
        return PartitionKey::With(path.clone());
    }
    let Some(name) = &container.attrs.partition_key else {
        return PartitionKey::Fields(key_fields.to_vec());
    };
    match model.iter().position(|f| f.ident == name) {
        None => {
            cx.error_spanned_by(
                name,
                format!("`partition_key` names `{name}`, which is not a field of this struct"),
            );
            PartitionKey::Fields(Vec::new())
        }
        Some(index) if model[index].skip => {
            cx.error_spanned_by(
                name,
                format!("`partition_key` names `{name}`, which is `#[outbox(skip)]`ped"),
            );
            PartitionKey::Fields(Vec::new())
        }
        Some(index) => PartitionKey::Fields(vec![index]),
    }
}
