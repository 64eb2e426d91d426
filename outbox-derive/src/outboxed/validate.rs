//! Rules across attributes and fields; turns the parsed input into the model
//! expansion reads. Every broken rule is recorded, then parsing goes on.

use std::collections::BTreeMap;

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Ident, LitStr, Path, Type, parse_quote};

use super::ast::{Container, Field};
use super::attr::{AvroAttrs, Destroyed, FieldDefault};
use crate::attr_util::{path_to_string, version_of};
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
    pub(crate) avro: Option<AvroModel>,
    /// `format = "avro"`: Avro on the wire (`avro` is then implied).
    pub(crate) avro_on_wire: bool,
    pub(crate) fields: Vec<ModelField<'a>>,
    /// `#[outbox(version)]`: the field that counts the row's changes.
    pub(crate) version: Option<VersionField>,
}

/// The version field and where the consumer reads the row's version.
pub(crate) struct VersionField {
    /// Its index in `fields`.
    pub(crate) index: usize,
    /// Diesel's table (`#[diesel(table_name)]`).
    pub(crate) table: Path,
    /// Its column in that table: `#[diesel(column_name)]`, else the field's name.
    pub(crate) column: Ident,
}

/// The Avro record's full name, defaults applied.
pub(crate) struct AvroModel {
    /// `name`, else the struct's ident (raw `r#` stripped).
    pub(crate) name: String,
    /// `namespace`, else the topic made Avro-legal ([`avro_namespace`]).
    pub(crate) namespace: String,
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
    /// `avro_type = ".."`: a checked Avro type name or JSON schema text.
    pub(crate) avro_type: Option<LitStr>,
    /// Its Diesel column: `#[diesel(column_name)]`, else the field's name
    /// (raw `r#` stripped, as Diesel writes it in SQL).
    pub(crate) column: String,
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
    let avro_on_wire = attrs
        .format
        .as_ref()
        .is_some_and(|format| wire_format(cx, format));
    // `format = "avro"` needs the schemas: it implies `avro` with its defaults.
    let implied = AvroAttrs {
        name: None,
        namespace: None,
    };
    let avro = match (&attrs.avro, avro_on_wire) {
        (Some(avro), _) => Some(avro),
        (None, true) => Some(&implied),
        (None, false) => None,
    }
    .map(|avro| avro_model(cx, avro, ident, &topic));
    let fields: Vec<ModelField<'a>> = container
        .fields
        .iter()
        .map(|field| model_field(cx, field, &versions, avro.is_some()))
        .collect();
    check_wire_names(cx, &container.fields, &fields);

    let key_fields = key_fields(cx, &container, &fields, &versions);
    let version = version_field(cx, &container, &key_fields);
    let partition_key = partition_key(cx, &container, &fields, &key_fields);
    if let (Some(first), Some(_)) = (&attrs.partition_key, &attrs.partition_key_with) {
        cx.error_spanned_by(
            first,
            "give either `partition_key` or `partition_key_with`, not both",
        );
    }
    if let (Some(_), Some(path)) = (&avro, &attrs.payload_with) {
        let what = if avro_on_wire {
            "`format = \"avro\"`"
        } else {
            "`avro`"
        };
        cx.error_spanned_by(
            path,
            format!(
                "`payload_with` and {what} do not go together: the derive cannot generate a schema \
                 for the JSON a custom payload function returns; remove one of them"
            ),
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
        avro,
        avro_on_wire,
        fields,
        version,
    })
}

/// `#[outbox(version)]`: on one field, carried by every message as a plain
/// integer, not part of the key, on a model whose Diesel table is named.
fn version_field(
    cx: &Ctxt,
    container: &Container<'_>,
    key_fields: &[usize],
) -> Option<VersionField> {
    let mut found: Option<(usize, Span)> = None;
    for (index, field) in container.fields.iter().enumerate() {
        let attrs = &field.attrs;
        let Some(key) = attrs.version else { continue };
        if let Some((first, _)) = found {
            cx.error_at(
                key,
                format!(
                    "only one field can be the version: `{}` already is",
                    container.fields[first].ident.unraw()
                ),
            );
            continue;
        }
        found = Some((index, key));
        // Each is reported at its own key, with the reason.
        let carried =
            "the version must be in every payload version, so every message can be ordered";
        let conflicts = [
            attrs
                .skip
                .map(|span| (span, "skip", "every message must carry its version")),
            attrs.since.map(|(_, span)| (span, "since", carried)),
            attrs.until.map(|(_, span)| (span, "until", carried)),
            attrs.with.as_ref().map(|with| {
                (
                    with.span(),
                    "with",
                    "the version travels as a plain integer, which the consumer reads itself",
                )
            }),
            attrs.default_key.map(|span| {
                (
                    span,
                    "default",
                    "every message must carry its version; one without it could not be ordered",
                )
            }),
        ];
        for (span, other, reason) in conflicts.into_iter().flatten() {
            cx.error_at(
                span,
                format!("`{other}` does not go with `version`: {reason}"),
            );
        }
        if key_fields.contains(&index) {
            cx.error_at(
                key,
                "the version cannot be a primary-key field: a row keeps its key, \
                 the version counts its changes",
            );
        }
    }
    let (index, key) = found?;
    let Some(table) = &container.attrs.table_name else {
        cx.error_at(
            key,
            "`version` needs `#[diesel(table_name = ...)]` on the struct: \
             the consumer reads the row's stored version from that table",
        );
        return None;
    };
    let field = &container.fields[index];
    Some(VersionField {
        index,
        table: table.clone(),
        column: field
            .attrs
            .column_name
            .clone()
            .unwrap_or_else(|| field.ident.clone()),
    })
}

/// `format = "json" | "avro"`: whether the model travels as Avro.
fn wire_format(cx: &Ctxt, format: &LitStr) -> bool {
    match format.value().as_str() {
        "avro" => true,
        "json" => false,
        other => {
            cx.error_spanned_by(
                format,
                format!(
                    "unknown format `{other}`: expected `format = \"json\"` (the JSON envelope, \
                     the default) or `format = \"avro\"` (Avro in the Confluent wire format)"
                ),
            );
            false
        }
    }
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

/// `avro`: whether the struct has `#[outbox(avro)]`.
fn model_field<'a>(cx: &Ctxt, field: &Field<'a>, versions: &[u32], avro: bool) -> ModelField<'a> {
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
        // On the version field, `since` is a mistake of its own.
        && attrs.version.is_none()
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
            attrs.avro_type.as_ref().map(|t| ("avro_type", t.span())),
        ];
        for (key, span) in ignored.into_iter().flatten() {
            cx.error_at(span, format!("`{key}` has no effect on a skipped field"));
        }
    }

    let name = field.ident.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name);

    if let Some(avro_type) = &attrs.avro_type
        && let Err(reason) = check_avro_type(&avro_type.value())
    {
        cx.error_spanned_by(avro_type, reason);
    }
    // A skipped field is in no schema: "no effect" above says all there is.
    if !skip {
        if let Some(key) = attrs.avro_type_key
            && !avro
        {
            cx.error_at(
                key,
                "`avro_type` needs `#[outbox(avro)]` on the struct \
                 (it gives the field's type in the generated Avro schema)",
            );
        }
        // The module may serialize to anything; only the user knows its Avro type.
        if let Some(with) = &attrs.with
            && avro
            && attrs.avro_type.is_none()
        {
            cx.error_spanned_by(
                with,
                format!(
                    "the Avro type of field `{name}` is unknown: `with = {}` decides how it is \
                     serialized; give it with `avro_type = \"...\"`",
                    path_to_string(with)
                ),
            );
        }
    }

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
        avro_type: attrs.avro_type.clone(),
        column: attrs
            .column_name
            .as_ref()
            .unwrap_or(field.ident)
            .unraw()
            .to_string(),
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

/// `avro(name, namespace)` checked, with the defaults for what is left out.
fn avro_model(cx: &Ctxt, avro: &AvroAttrs, ident: &Ident, topic: &str) -> AvroModel {
    let name = match &avro.name {
        Some(name) => {
            let value = name.value();
            if let Err(reason) =
                check_avro_name("`name`", &value).and_then(|()| not_primitive(&value))
            {
                cx.error_spanned_by(name, reason);
            }
            value
        }
        None => {
            let value = ident.to_string();
            let value = value.strip_prefix("r#").unwrap_or(&value).to_owned();
            // Rust allows non-ASCII identifiers; Avro does not.
            if let Err(reason) = check_avro_name(&format!("the struct's name `{value}`"), &value)
                .and_then(|()| not_primitive(&value))
            {
                cx.error_spanned_by(
                    ident,
                    format!(
                        "{reason}; name the Avro record with `#[outbox(avro(name = \"...\"))]`"
                    ),
                );
            }
            value
        }
    };
    let namespace = match &avro.namespace {
        Some(namespace) => {
            let value = namespace.value();
            if let Err(reason) = check_avro_namespace(&value) {
                cx.error_spanned_by(namespace, reason);
            }
            value
        }
        None => avro_namespace(topic),
    };
    AvroModel { name, namespace }
}

/// Avro's rule for a name: `[A-Za-z_][A-Za-z0-9_]*`. `what` starts the message.
fn check_avro_name(what: &str, name: &str) -> Result<(), String> {
    let Some(first) = name.chars().next() else {
        return Err(format!("{what} must not be empty"));
    };
    if !(first.is_ascii_alphabetic() || first == '_') {
        return Err(format!(
            "{what} starts with {first:?}; an Avro name starts with an ASCII letter or `_`"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!(
            "{what} contains {c:?}; an Avro name uses only ASCII letters, digits and `_`"
        ));
    }
    Ok(())
}

/// Avro reserves the primitive types' names: no record may take one.
fn not_primitive(name: &str) -> Result<(), String> {
    if AVRO_PRIMITIVES.contains(&name) {
        return Err(format!(
            "`{name}` names an Avro primitive type; a record cannot take it"
        ));
    }
    Ok(())
}

/// An Avro namespace: one or more names joined by `.`.
fn check_avro_namespace(namespace: &str) -> Result<(), String> {
    if namespace.is_empty() {
        return Err("`namespace` must not be empty".to_owned());
    }
    for segment in namespace.split('.') {
        if segment.is_empty() {
            return Err(format!(
                "`namespace` \"{namespace}\" has an empty segment; an Avro namespace is names \
                 joined by `.`, like `com.acme.billing`"
            ));
        }
        check_avro_name(&format!("`namespace` segment `{segment}`"), segment)?;
    }
    Ok(())
}

/// The default namespace: the topic with each `.`-separated segment made an
/// Avro name (`billing.invoices-v2` → `billing.invoices_v2`). Kafka allows
/// `-` and leading digits in topics, Avro not in names.
fn avro_namespace(topic: &str) -> String {
    let segments: Vec<String> = topic
        .split('.')
        .map(|segment| {
            let mut name: String = segment
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            // `a..b` and `.a` are legal topics; an empty Avro name is not.
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                name.insert(0, '_');
            }
            name
        })
        .collect();
    segments.join(".")
}

const AVRO_PRIMITIVES: &[&str] = &[
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// Logical types written by name alone; `decimal` and `duration` need more
/// (precision, a fixed size), so they are given as JSON.
const AVRO_LOGICAL_TYPES: &[&str] = &[
    "date",
    "time-millis",
    "time-micros",
    "timestamp-millis",
    "timestamp-micros",
    "local-timestamp-millis",
    "local-timestamp-micros",
    "uuid",
];

/// `avro_type = ".."`: a primitive or logical type's name, or schema JSON text
/// (a type name as a JSON string, a schema object, or a union array). The
/// runtime reads the schema itself; this only catches what cannot be one.
fn check_avro_type(text: &str) -> Result<(), String> {
    if AVRO_PRIMITIVES.contains(&text) || AVRO_LOGICAL_TYPES.contains(&text) {
        return Ok(());
    }
    // Anything else that does not open like JSON is a misspelt name, not bad JSON.
    if !text.trim_start().starts_with(['{', '[', '"']) {
        return Err(unknown_avro_type(text));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Err(error) => Err(format!("`avro_type` is not valid JSON: {error}")),
        Ok(serde_json::Value::String(_) | serde_json::Value::Array(_)) => Ok(()),
        Ok(serde_json::Value::Object(object))
            if object.get("type").is_some_and(serde_json::Value::is_string) =>
        {
            Ok(())
        }
        Ok(_) => Err(
            "`avro_type` is a JSON object without a string `\"type\"` member; an Avro schema \
             object names its type: `{\"type\": \"enum\", ...}`"
                .to_owned(),
        ),
    }
}

fn unknown_avro_type(text: &str) -> String {
    let scored: Vec<(f64, &str)> = AVRO_PRIMITIVES
        .iter()
        .chain(AVRO_LOGICAL_TYPES)
        .map(|name| (strsim::jaro_winkler(text, name), *name))
        .filter(|(score, _)| *score > 0.8)
        .collect();
    let best = scored.iter().map(|(score, _)| *score).fold(0.0, f64::max);
    // `timestamp` is as near `timestamp-millis` as `timestamp-micros`: offer both.
    let nearest: Vec<String> = scored
        .iter()
        .filter(|(score, _)| *score == best)
        .map(|(_, name)| format!("{name:?}"))
        .collect();
    let suggestion = if nearest.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", nearest.join(" or "))
    };
    format!(
        "unknown Avro type {text:?}{suggestion}\nexpected a primitive ({}), a logical type ({}), \
         or an Avro schema as JSON text",
        AVRO_PRIMITIVES.join(", "),
        AVRO_LOGICAL_TYPES.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_namespace_is_the_topic_made_avro_legal() {
        for (topic, namespace) in [
            ("billing.invoices-v2", "billing.invoices_v2"),
            ("2024.events", "_2024.events"),
            ("accounts", "accounts"),
            ("a-b.c-1.9x", "a_b.c_1._9x"),
            ("Acme_1.users", "Acme_1.users"),
            ("a..b", "a._.b"),
            (".a", "_.a"),
        ] {
            assert_eq!(avro_namespace(topic), namespace, "{topic}");
            assert_eq!(
                check_avro_namespace(&avro_namespace(topic)),
                Ok(()),
                "{topic}"
            );
        }
    }

    #[test]
    fn avro_names_follow_the_spec() {
        for name in ["Invoice", "_x", "a1_B"] {
            assert_eq!(check_avro_name("`name`", name), Ok(()), "{name}");
        }
        for (name, error) in [
            ("", "`name` must not be empty"),
            (
                "1x",
                "`name` starts with '1'; an Avro name starts with an ASCII letter or `_`",
            ),
            (
                "a-b",
                "`name` contains '-'; an Avro name uses only ASCII letters, digits and `_`",
            ),
            (
                "Café",
                "`name` contains 'é'; an Avro name uses only ASCII letters, digits and `_`",
            ),
        ] {
            assert_eq!(
                check_avro_name("`name`", name).unwrap_err(),
                error,
                "{name}"
            );
        }
        assert!(not_primitive("string").is_err());
        assert!(not_primitive("String").is_ok());
    }

    #[test]
    fn avro_namespaces_are_names_joined_by_dots() {
        for namespace in ["com.acme.billing", "acme", "_1.x"] {
            assert_eq!(check_avro_namespace(namespace), Ok(()), "{namespace}");
        }
        for namespace in ["", "com..acme", ".com", "com.", "com.1acme", "com.ac-me"] {
            assert!(check_avro_namespace(namespace).is_err(), "{namespace}");
        }
    }

    #[test]
    fn avro_types_are_names_or_schema_json() {
        for text in [
            "null",
            "string",
            "timestamp-millis",
            "local-timestamp-micros",
            "uuid",
            r#""com.acme.Kind""#,
            r#"{"type": "enum", "name": "Kind", "symbols": ["A", "B"]}"#,
            r#" ["null", "string"]"#,
        ] {
            assert_eq!(check_avro_type(text), Ok(()), "{text}");
        }
        for text in [
            "",
            "i64",
            "decimal",
            "42",
            "true",
            r#"{"name": "x"}"#,
            r#"{"type": 1}"#,
        ] {
            assert!(check_avro_type(text).is_err(), "{text}");
        }
        let error = check_avro_type(r#"{"type": "enum",}"#).unwrap_err();
        assert!(
            error.starts_with("`avro_type` is not valid JSON: "),
            "{error}"
        );
    }

    #[test]
    fn near_misses_of_avro_type_names_get_suggestions() {
        let error = check_avro_type("timestamp").unwrap_err();
        assert!(
            error.starts_with(
                r#"unknown Avro type "timestamp"; did you mean "timestamp-millis" or "timestamp-micros"?"#
            ),
            "{error}"
        );
        let error = check_avro_type("String").unwrap_err();
        assert!(
            error.starts_with(r#"unknown Avro type "String"; did you mean "string"?"#),
            "{error}"
        );
        let error = check_avro_type("i64").unwrap_err();
        assert!(
            error.starts_with("unknown Avro type \"i64\"\nexpected a primitive (null, "),
            "{error}"
        );
    }
}
