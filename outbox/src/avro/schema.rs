//! A version of a model as an Avro record schema and a JSON Schema: built
//! from the fields the derive lists, checked against the Avro specification's
//! rules on unions and defaults, written with a stable key order.

use serde_json::{Map, Value, json};

/// The primitive type names of Avro.
pub(crate) const PRIMITIVES: &[&str] = &[
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The logical types `avro_type` accepts by name, with the type under each.
pub(crate) const LOGICAL: &[(&str, &str)] = &[
    ("date", "int"),
    ("time-millis", "int"),
    ("time-micros", "long"),
    ("timestamp-millis", "long"),
    ("timestamp-micros", "long"),
    ("local-timestamp-millis", "long"),
    ("local-timestamp-micros", "long"),
    ("uuid", "string"),
];

/// The JSON Schema dialect of the generated schemas.
pub const JSON_SCHEMA_DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// One field of a version, as the derive lists it.
#[doc(hidden)]
pub struct FieldSpec {
    /// The field's name in this version.
    pub name: &'static str,
    /// Its names in the model's other versions (Avro resolves renames by alias).
    pub aliases: &'static [&'static str],
    /// Its Avro type: from [`AvroField`](super::AvroField), or `avro_type`.
    pub avro: Result<Value, String>,
    /// Its JSON Schema; `None` to derive it from the Avro type (`avro_type`).
    pub json: Option<Value>,
    /// Whether a `with` module serializes it: its JSON is then described by
    /// the Avro type's underlying primitive (a `timestamp-millis` through
    /// `ts_milliseconds` is a number), not by the usual form of the logical type.
    pub with: bool,
    /// Its default as serde writes it (`default`, `default = path`); `None`
    /// without one (an `Option` field then defaults to `null`).
    pub default: Option<Result<Value, String>>,
}

/// One version of a model, as the derive lists it.
#[doc(hidden)]
pub struct RecordSpec {
    pub name: &'static str,
    pub namespace: &'static str,
    /// What the record describes, for the schemas' `doc`/`description`.
    pub doc: &'static str,
    pub fields: Vec<FieldSpec>,
}

/// A version's schemas, built.
#[doc(hidden)]
pub struct Built {
    pub avro: String,
    pub json: Value,
    /// Per field of the version, in order: how its value is written and read.
    pub fields: Vec<FieldCodec>,
}

/// How a field's value is written and read.
#[doc(hidden)]
pub struct FieldCodec {
    /// Its Avro type in the schema.
    pub avro: Value,
    /// Through serde's JSON and [`avro`](FieldCodec::avro) (`avro_type`, or an
    /// `Option` whose union was reordered for its default), rather than its
    /// type's [`AvroField`](super::AvroField) encoding.
    pub bridge: bool,
    /// Whether a `with` module reads it: logical types are read as numbers.
    pub with: bool,
    /// Whether the schema gives it a default: a writer without it can be read.
    pub has_default: bool,
    /// [`avro`](FieldCodec::avro) parsed, to read a bridged value back (a
    /// type naming one defined elsewhere cannot be: why, for the read's error).
    pub reader: Result<super::WriterSchema, String>,
    /// [`avro`](FieldCodec::avro) compiled, for the direct writer of a
    /// bridged field (once here, not at every write).
    pub(crate) compiled: super::compiled::Node,
}

impl RecordSpec {
    /// Builds both schemas, or says which field breaks which rule.
    pub fn build(self) -> Result<Built, String> {
        let mut avro_fields = Vec::with_capacity(self.fields.len());
        let mut properties = Map::new();
        let mut required = Vec::new();
        let mut codecs = Vec::with_capacity(self.fields.len());
        for field in self.fields {
            let in_field = |reason: String| format!("field `{}`: {reason}", field.name);
            let mut avro = field.avro.map_err(in_field)?;
            check_type(&avro, false).map_err(in_field)?;
            let mapped = avro.clone();
            let default = match field.default {
                Some(value) => Some(
                    value
                        .and_then(|value| default_first(&mut avro, value))
                        .map_err(|reason| in_field(format!("its default: {reason}")))?,
                ),
                None if is_null_first_union(&avro) => Some(Value::Null),
                None => None,
            };
            let bridge = field.json.is_none() || avro != mapped;
            codecs.push(FieldCodec {
                avro: avro.clone(),
                bridge,
                with: field.with,
                has_default: default.is_some(),
                reader: super::WriterSchema::of_type(&avro),
                compiled: super::compiled::Node::compile(&avro),
            });
            let json = field
                .json
                .unwrap_or_else(|| json_schema_of(&avro, field.with));
            if default.is_none() {
                required.push(Value::from(field.name));
            }
            properties.insert(field.name.to_owned(), json);
            avro_fields.push((field.name, avro, default, field.aliases));
        }
        let avro = write_record(self.name, self.namespace, self.doc, &avro_fields);
        let mut json = Map::new();
        json.insert("$schema".into(), JSON_SCHEMA_DIALECT.into());
        json.insert("title".into(), self.name.into());
        json.insert("description".into(), self.doc.into());
        json.insert("type".into(), "object".into());
        json.insert("properties".into(), Value::Object(properties));
        json.insert("required".into(), Value::Array(required));
        Ok(Built {
            avro,
            json: Value::Object(json),
            fields: codecs,
        })
    }
}

/// `avro_type = "..."`: a primitive or logical type by name, else an Avro
/// schema as JSON text.
#[doc(hidden)]
pub fn parse_avro_type(text: &str) -> Result<Value, String> {
    if PRIMITIVES.contains(&text) {
        return Ok(Value::from(text));
    }
    if let Some((logical, under)) = LOGICAL.iter().find(|(name, _)| *name == text) {
        return Ok(json!({"type": under, "logicalType": logical}));
    }
    serde_json::from_str(text)
        .map_err(|e| format!("`avro_type` {text:?} is not a type name or JSON: {e}"))
}

/// Whether `avro` is a union whose first type is `null` (an `Option`).
fn is_null_first_union(avro: &Value) -> bool {
    avro.as_array()
        .and_then(|types| types.first())
        .is_some_and(|first| first == "null")
}

/// The spec's rules the derive cannot see: no union directly in a union, no
/// two types of one kind in a union, complex types complete.
fn check_type(avro: &Value, in_union: bool) -> Result<(), String> {
    match avro {
        Value::String(_) => Ok(()),
        Value::Array(types) => {
            if in_union {
                return Err(
                    "a union directly inside a union (e.g. `Option<Option<T>>`) has no Avro form"
                        .into(),
                );
            }
            let mut seen: Vec<String> = Vec::new();
            for branch in types {
                check_type(branch, true)?;
                let kind = branch_kind(branch);
                if seen.contains(&kind) {
                    return Err(format!("a union holds `{kind}` twice"));
                }
                seen.push(kind);
            }
            Ok(())
        }
        Value::Object(object) => {
            let Some(kind) = object.get("type") else {
                return Err(format!("an Avro type needs a \"type\": {avro}"));
            };
            match kind.as_str() {
                Some("array") => check_type(member(object, "items")?, false),
                Some("map") => check_type(member(object, "values")?, false),
                Some("record" | "error") => {
                    let fields = member(object, "fields")?
                        .as_array()
                        .ok_or("a record's \"fields\" must be an array")?;
                    for field in fields {
                        check_type(member_of(field, "type")?, false)?;
                    }
                    Ok(())
                }
                Some("enum") => member(object, "symbols").map(drop),
                Some("fixed") => member(object, "size").map(drop),
                Some(_) => check_type(kind, in_union),
                None => check_type(kind, in_union),
            }
        }
        other => Err(format!("{other} is not an Avro type")),
    }
}

fn member<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a Value, String> {
    object.get(key).ok_or_else(|| {
        format!(
            "an Avro type misses {key:?}: {}",
            Value::Object(object.clone())
        )
    })
}

fn member_of<'a>(value: &'a Value, key: &str) -> Result<&'a Value, String> {
    value
        .as_object()
        .ok_or_else(|| format!("expected an object, found {value}"))
        .and_then(|object| member(object, key))
}

/// What makes two union branches the same for the rule "one of each": the
/// primitive or complex kind, or the name of a named type.
fn branch_kind(branch: &Value) -> String {
    match branch {
        Value::String(name) => name.clone(),
        Value::Object(object) => match object.get("type").and_then(Value::as_str) {
            Some(named @ ("record" | "enum" | "fixed" | "error")) => object
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(named)
                .to_owned(),
            Some(kind) => kind.to_owned(),
            None => branch.to_string(),
        },
        other => other.to_string(),
    }
}

/// A field's default, converted from serde's JSON to the Avro form of
/// `avro`. A union's default must be of its first type: a `null`-first union
/// (an `Option`) with a value as default gets its `null` moved last.
fn default_first(avro: &mut Value, default: Value) -> Result<Value, String> {
    if let Value::Array(types) = avro
        && !default.is_null()
        && types.first().is_some_and(|t| t == "null")
        && types.len() > 1
    {
        let null = types.remove(0);
        types.push(null);
    }
    default_for(avro, default)
}

/// Converts `value` (serde's JSON of a Rust value) to the JSON the Avro
/// specification wants as a default of `avro`: timestamps as numbers, bytes
/// as a string of code points 0–255, a union's value of its first type.
fn default_for(avro: &Value, value: Value) -> Result<Value, String> {
    match avro {
        Value::Array(types) => match types.first() {
            Some(first) => default_for(first, value),
            None => Err("an empty union has no values".into()),
        },
        Value::String(kind) => primitive_default(kind, None, value),
        Value::Object(object) => {
            let kind = object.get("type").cloned().unwrap_or(Value::Null);
            let logical = object.get("logicalType").and_then(Value::as_str);
            match (kind.as_str(), logical) {
                (Some(kind), logical) if PRIMITIVES.contains(&kind) => {
                    primitive_default(kind, logical, value)
                }
                (Some("array"), _) => match value {
                    Value::Array(items) => {
                        let schema = member(object, "items")?;
                        items
                            .into_iter()
                            .map(|item| default_for(schema, item))
                            .collect::<Result<_, _>>()
                            .map(Value::Array)
                    }
                    other => Err(format!("expected an array, found {other}")),
                },
                (Some("map"), _) => match value {
                    Value::Object(entries) => {
                        let schema = member(object, "values")?;
                        entries
                            .into_iter()
                            .map(|(k, v)| default_for(schema, v).map(|v| (k, v)))
                            .collect::<Result<_, _>>()
                            .map(Value::Object)
                    }
                    other => Err(format!("expected an object, found {other}")),
                },
                (Some("enum"), _) => {
                    let symbols = member(object, "symbols")?;
                    match &value {
                        Value::String(s)
                            if symbols.as_array().is_some_and(|v| v.contains(&value)) =>
                        {
                            Ok(Value::from(s.as_str()))
                        }
                        _ => Err(format!(
                            "{value} is not one of the enum's symbols {symbols}"
                        )),
                    }
                }
                (Some("fixed"), _) => bytes_default(value),
                (Some("record" | "error"), _) => record_default(object, value),
                _ => Ok(value),
            }
        }
        _ => Ok(value),
    }
}

fn record_default(object: &Map<String, Value>, value: Value) -> Result<Value, String> {
    let Value::Object(mut given) = value else {
        return Err(format!("expected an object for a record, found {value}"));
    };
    let fields = member(object, "fields")?
        .as_array()
        .ok_or("a record's \"fields\" must be an array")?;
    let mut out = Map::new();
    for field in fields {
        let name = member_of(field, "name")?
            .as_str()
            .ok_or("a record field's name must be a string")?;
        let schema = member_of(field, "type")?;
        match given.remove(name) {
            Some(v) => {
                out.insert(name.to_owned(), default_for(schema, v)?);
            }
            None if field.get("default").is_some() => {}
            None => return Err(format!("the record value has no field `{name}`")),
        }
    }
    Ok(Value::Object(out))
}

fn primitive_default(kind: &str, logical: Option<&str>, value: Value) -> Result<Value, String> {
    let wrong = |value: &Value| Err(format!("{value} is not a value of Avro type `{kind}`"));
    match (kind, logical, &value) {
        ("null", _, Value::Null) => Ok(value),
        ("boolean", _, Value::Bool(_)) => Ok(value),
        ("int" | "long", Some(logical), Value::String(text)) => temporal(logical, text),
        ("int", _, Value::Number(n)) if n.as_i64().is_some_and(|n| i32::try_from(n).is_ok()) => {
            Ok(value)
        }
        ("long", _, Value::Number(n)) if n.is_i64() => Ok(value),
        ("float" | "double", _, Value::Number(_)) => Ok(value),
        ("float" | "double", _, Value::Null) => {
            Err("serde writes a non-finite float as null, which an Avro default cannot hold".into())
        }
        ("string", _, Value::String(_)) => Ok(value),
        // A `jsonb` column travels as its JSON text.
        ("string", None, other) if !other.is_string() => Ok(Value::from(other.to_string())),
        ("bytes", _, _) => bytes_default(value),
        _ => wrong(&value),
    }
}

/// Bytes as the specification writes them in JSON: one code point per byte.
fn bytes_default(value: Value) -> Result<Value, String> {
    match value {
        Value::String(_) => Ok(value),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_u64()
                    .and_then(|b| u8::try_from(b).ok())
                    .map(char::from)
                    .ok_or_else(|| format!("{item} is not a byte"))
            })
            .collect::<Result<String, _>>()
            .map(Value::from),
        other => Err(format!("{other} is not bytes")),
    }
}

/// A date or time as chrono's serde writes it, as the number its logical type holds.
pub(crate) fn temporal(logical: &str, text: &str) -> Result<Value, String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
    let unparsable = |e: chrono::ParseError| format!("{text:?} is not a {logical}: {e}");
    let number = match logical {
        "date" => {
            let date: NaiveDate = text.parse().map_err(unparsable)?;
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
            (date - epoch).num_days()
        }
        "timestamp-millis" => DateTime::parse_from_rfc3339(text)
            .map_err(unparsable)?
            .timestamp_millis(),
        "timestamp-micros" => DateTime::parse_from_rfc3339(text)
            .map_err(unparsable)?
            .timestamp_micros(),
        "local-timestamp-millis" => text
            .parse::<NaiveDateTime>()
            .map_err(unparsable)?
            .and_utc()
            .timestamp_millis(),
        "local-timestamp-micros" => text
            .parse::<NaiveDateTime>()
            .map_err(unparsable)?
            .and_utc()
            .timestamp_micros(),
        "time-millis" | "time-micros" => {
            let time: NaiveTime = text.parse().map_err(unparsable)?;
            let micros = i64::from(time.num_seconds_from_midnight()) * 1_000_000
                + i64::from(time.nanosecond() / 1_000);
            if logical == "time-millis" {
                micros / 1_000
            } else {
                micros
            }
        }
        other => return Err(format!("{text:?} is not a value of logical type `{other}`")),
    };
    Ok(Value::from(number))
}

/// A logical type's number as the string chrono's serde reads.
pub(crate) fn from_temporal(logical: &str, n: i64) -> Result<Value, String> {
    use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat};
    let out_of_range = || format!("{n} is out of range for {logical}");
    let text = match logical {
        "date" => NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::try_days(n)?))
            .ok_or_else(out_of_range)?
            .to_string(),
        "timestamp-millis" | "timestamp-micros" => {
            let at = if logical == "timestamp-millis" {
                DateTime::from_timestamp_millis(n)
            } else {
                DateTime::from_timestamp_micros(n)
            };
            at.ok_or_else(out_of_range)?
                .to_rfc3339_opts(SecondsFormat::AutoSi, true)
        }
        "local-timestamp-millis" | "local-timestamp-micros" => {
            let at = if logical == "local-timestamp-millis" {
                DateTime::from_timestamp_millis(n)
            } else {
                DateTime::from_timestamp_micros(n)
            };
            at.ok_or_else(out_of_range)?
                .naive_utc()
                .format("%Y-%m-%dT%H:%M:%S%.f")
                .to_string()
        }
        "time-millis" | "time-micros" => {
            let micros = if logical == "time-millis" {
                n.saturating_mul(1000)
            } else {
                n
            };
            let secs = u32::try_from(micros.div_euclid(1_000_000)).map_err(|_| out_of_range())?;
            let nanos =
                u32::try_from(micros.rem_euclid(1_000_000) * 1000).map_err(|_| out_of_range())?;
            NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
                .ok_or_else(out_of_range)?
                .format("%H:%M:%S%.f")
                .to_string()
        }
        _ => return Ok(Value::from(n)),
    };
    Ok(Value::from(text))
}

/// The JSON Schema of the JSON form of a value of `avro`, for fields whose
/// Rust type is not known to the schema (`avro_type`): the forms serde gives
/// the common Rust types of each logical type (chrono, uuid), or with a
/// `with` module, the underlying primitive's.
fn json_schema_of(avro: &Value, with: bool) -> Value {
    let of = |avro: &Value| json_schema_of(avro, with);
    match avro {
        Value::String(kind) => primitive_json(kind, None),
        Value::Array(types) => json!({"anyOf": types.iter().map(of).collect::<Vec<_>>()}),
        Value::Object(object) => {
            let kind = object.get("type").and_then(Value::as_str).unwrap_or("");
            let logical = object
                .get("logicalType")
                .and_then(Value::as_str)
                .filter(|_| !with);
            match kind {
                "array" => json!({"type": "array",
                    "items": object.get("items").map_or(json!({}), of)}),
                "map" => json!({"type": "object",
                    "additionalProperties": object.get("values").map_or(json!({}), of)}),
                "enum" => json!({"enum": object.get("symbols").cloned().unwrap_or(json!([]))}),
                "fixed" => {
                    json!({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}})
                }
                "record" | "error" => {
                    let fields = object.get("fields").and_then(Value::as_array);
                    let properties: Map<String, Value> = fields
                        .into_iter()
                        .flatten()
                        .filter_map(|f| {
                            let name = f.get("name")?.as_str()?.to_owned();
                            Some((name, of(f.get("type")?)))
                        })
                        .collect();
                    json!({"type": "object", "properties": properties})
                }
                kind => primitive_json(kind, logical),
            }
        }
        _ => json!({}),
    }
}

fn primitive_json(kind: &str, logical: Option<&str>) -> Value {
    match (kind, logical) {
        (_, Some("date")) => json!({"type": "string", "format": "date"}),
        (_, Some("timestamp-millis" | "timestamp-micros")) => {
            json!({"type": "string", "format": "date-time"})
        }
        (_, Some("time-millis" | "time-micros")) => json!({"type": "string", "format": "time"}),
        (_, Some("local-timestamp-millis" | "local-timestamp-micros")) => json!({"type": "string"}),
        (_, Some("uuid")) => json!({"type": "string", "format": "uuid"}),
        ("null", _) => json!({"type": "null"}),
        ("boolean", _) => json!({"type": "boolean"}),
        ("int", _) => json!({"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX}),
        ("long", _) => json!({"type": "integer"}),
        ("float" | "double", _) => json!({"type": "number"}),
        ("string", _) => json!({"type": "string"}),
        ("bytes", _) => {
            json!({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}})
        }
        // A named type defined elsewhere in the schema: any JSON.
        _ => json!({}),
    }
}

/// The record's schema text: keys in the order people write them (`type`,
/// `name` and `namespace` first; a field's `name` before its `type`), so the
/// text is stable and reads as written by hand.
fn write_record(
    name: &str,
    namespace: &str,
    doc: &str,
    fields: &[(&str, Value, Option<Value>, &[&str])],
) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"type\":\"record\",\"name\":");
    push_json(&mut out, &Value::from(name));
    if !namespace.is_empty() {
        out.push_str(",\"namespace\":");
        push_json(&mut out, &Value::from(namespace));
    }
    out.push_str(",\"doc\":");
    push_json(&mut out, &Value::from(doc));
    out.push_str(",\"fields\":[");
    for (i, (field, avro, default, aliases)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        push_json(&mut out, &Value::from(*field));
        out.push_str(",\"type\":");
        push_ordered(&mut out, avro);
        if let Some(default) = default {
            out.push_str(",\"default\":");
            push_json(&mut out, default);
        }
        if !aliases.is_empty() {
            out.push_str(",\"aliases\":");
            push_json(&mut out, &json!(aliases));
        }
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// The order of known keys in a type's object; others follow, sorted.
const KEY_ORDER: &[&str] = &[
    "type",
    "name",
    "namespace",
    "doc",
    "aliases",
    "fields",
    "items",
    "values",
    "symbols",
    "size",
    "logicalType",
    "precision",
    "scale",
    "default",
];

fn push_ordered(out: &mut String, value: &Value) {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort_by_key(|k| {
                (
                    KEY_ORDER
                        .iter()
                        .position(|o| o == k)
                        .unwrap_or(KEY_ORDER.len()),
                    k.as_str(),
                )
            });
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json(out, &Value::from(key.as_str()));
                out.push(':');
                // A record's fields put `name` first, like the model's own.
                if key == "fields"
                    && let Value::Array(fields) = &object[key]
                {
                    out.push('[');
                    for (j, field) in fields.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        push_field(out, field);
                    }
                    out.push(']');
                } else {
                    push_ordered(out, &object[key]);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_ordered(out, item);
            }
            out.push(']');
        }
        other => push_json(out, other),
    }
}

fn push_field(out: &mut String, field: &Value) {
    let Value::Object(object) = field else {
        return push_ordered(out, field);
    };
    out.push('{');
    let mut first = true;
    let mut keys: Vec<&String> = object.keys().collect();
    keys.sort_by_key(|k| {
        let rank = ["name", "type", "default", "aliases", "doc"]
            .iter()
            .position(|o| o == k)
            .unwrap_or(usize::MAX);
        (rank, k.as_str())
    });
    for key in keys {
        if !first {
            out.push(',');
        }
        first = false;
        push_json(out, &Value::from(key.as_str()));
        out.push(':');
        if key == "default" {
            push_json(out, &object[key]);
        } else {
            push_ordered(out, &object[key]);
        }
    }
    out.push('}');
}

fn push_json(out: &mut String, value: &Value) {
    // Writing a `Value` to a `String` cannot fail.
    out.push_str(&value.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &'static str, avro: Value) -> FieldSpec {
        FieldSpec {
            name,
            aliases: &[],
            avro: Ok(avro),
            json: None,
            with: false,
            default: None,
        }
    }

    fn build(fields: Vec<FieldSpec>) -> Result<Built, String> {
        RecordSpec {
            name: "User",
            namespace: "accounts",
            doc: "users v1",
            fields,
        }
        .build()
    }

    #[test]
    fn a_record_keeps_field_order_defaults_and_aliases() {
        let built = build(vec![
            field("id", json!("long")),
            FieldSpec {
                aliases: &["mail"],
                ..field("email", json!("string"))
            },
            field("nick", json!(["null", "string"])),
            FieldSpec {
                default: Some(Ok(json!("en"))),
                ..field("locale", json!(["null", "string"]))
            },
        ])
        .unwrap();
        assert_eq!(
            built.avro,
            r#"{"type":"record","name":"User","namespace":"accounts","doc":"users v1","fields":[{"name":"id","type":"long"},{"name":"email","type":"string","aliases":["mail"]},{"name":"nick","type":["null","string"],"default":null},{"name":"locale","type":["string","null"],"default":"en"}]}"#
        );
        assert_eq!(built.json["required"], json!(["id", "email"]));
        assert_eq!(
            built.json["properties"]["nick"],
            json!({"anyOf": [{"type": "null"}, {"type": "string"}]})
        );
    }

    #[test]
    fn defaults_take_their_avro_form() {
        let cases = [
            (
                json!({"type": "long", "logicalType": "timestamp-millis"}),
                json!("1970-01-01T00:00:01.5Z"),
                json!(1500),
            ),
            (
                json!({"type": "long", "logicalType": "timestamp-micros"}),
                json!("2026-12-03T00:00:00+01:00"),
                json!(1_796_252_400_000_000_i64),
            ),
            (
                json!({"type": "int", "logicalType": "date"}),
                json!("1970-01-11"),
                json!(10),
            ),
            (json!("bytes"), json!([104, 105, 255]), json!("hi\u{ff}")),
            (json!("string"), json!({"a": [1]}), json!(r#"{"a":[1]}"#)),
            (
                json!({"type": "array", "items": {"type": "int", "logicalType": "date"}}),
                json!(["1970-01-02"]),
                json!([1]),
            ),
        ];
        for (avro, serde, expected) in cases {
            assert_eq!(
                default_for(&avro, serde.clone()),
                Ok(expected),
                "{avro} from {serde}"
            );
        }
    }

    #[test]
    fn broken_rules_are_named() {
        let nested = build(vec![field("x", json!(["null", ["null", "long"]]))]);
        assert_eq!(
            nested.err().as_deref(),
            Some(
                "field `x`: a union directly inside a union (e.g. `Option<Option<T>>`) has no Avro form"
            )
        );
        let twice = build(vec![field("x", json!(["null", "long", "long"]))]);
        assert_eq!(
            twice.err().as_deref(),
            Some("field `x`: a union holds `long` twice")
        );
        let out_of_range = build(vec![FieldSpec {
            default: Some(Ok(json!(1_u64 << 40))),
            ..field("x", json!("int"))
        }]);
        assert_eq!(
            out_of_range.err().as_deref(),
            Some("field `x`: its default: 1099511627776 is not a value of Avro type `int`")
        );
        let symbol = build(vec![FieldSpec {
            default: Some(Ok(json!("C"))),
            ..field(
                "x",
                json!({"type": "enum", "name": "K", "symbols": ["A", "B"]}),
            )
        }]);
        assert_eq!(
            symbol.err().as_deref(),
            Some(r#"field `x`: its default: "C" is not one of the enum's symbols ["A","B"]"#)
        );
    }

    #[test]
    fn avro_type_names_and_json_text() {
        assert_eq!(parse_avro_type("long"), Ok(json!("long")));
        assert_eq!(
            parse_avro_type("timestamp-millis"),
            Ok(json!({"type": "long", "logicalType": "timestamp-millis"}))
        );
        assert_eq!(
            parse_avro_type(r#"{"type": "enum", "name": "K", "symbols": ["A"]}"#),
            Ok(json!({"type": "enum", "name": "K", "symbols": ["A"]}))
        );
        assert!(parse_avro_type("timestamp").is_err());
    }

    #[test]
    fn nested_types_are_written_type_first() {
        let mut out = String::new();
        push_ordered(
            &mut out,
            &json!({"symbols": ["A"], "name": "K", "type": "enum"}),
        );
        assert_eq!(out, r#"{"type":"enum","name":"K","symbols":["A"]}"#);
        let mut out = String::new();
        push_ordered(
            &mut out,
            &json!({"type": "record", "name": "R", "fields": [{"type": "long", "name": "a"}]}),
        );
        assert_eq!(
            out,
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}"#
        );
    }
}
