//! Fields without an [`AvroField`](super::AvroField) mapping (`avro_type`,
//! `with`) go through serde's JSON: their JSON is written by the field's Avro
//! type here, and read back into the JSON their `Deserialize` expects by
//! [`WriterSchema::read_json`](super::WriterSchema::read_json).

use serde_json::{Map, Value};

use super::codec::{write_bool, write_bytes, write_double, write_float, write_long};
use super::schema::temporal;

/// Writes `value` (serde's JSON of a field) as a datum of `avro`.
pub(crate) fn write_json(avro: &Value, value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match avro {
        Value::String(kind) => write_primitive(kind, None, value, out),
        Value::Array(branches) => {
            let (index, branch) = branches
                .iter()
                .enumerate()
                .find(|(_, branch)| accepts(branch, value))
                .ok_or_else(|| format!("{} fits no type of the union {avro}", short(value)))?;
            write_long(out, index as i64);
            write_json(branch, value, out)
        }
        Value::Object(object) => {
            let logical = object.get("logicalType").and_then(Value::as_str);
            match object.get("type") {
                Some(Value::String(kind)) => match kind.as_str() {
                    "array" => {
                        let items = member(object, "items")?;
                        let Value::Array(values) = value else {
                            return Err(format!("expected an array, found {}", short(value)));
                        };
                        if !values.is_empty() {
                            write_long(out, values.len() as i64);
                            for item in values {
                                write_json(items, item, out)?;
                            }
                        }
                        out.push(0);
                        Ok(())
                    }
                    "map" => {
                        let schema = member(object, "values")?;
                        let Value::Object(entries) = value else {
                            return Err(format!("expected an object, found {}", short(value)));
                        };
                        if !entries.is_empty() {
                            write_long(out, entries.len() as i64);
                            for (key, entry) in entries {
                                write_bytes(out, key.as_bytes());
                                write_json(schema, entry, out)?;
                            }
                        }
                        out.push(0);
                        Ok(())
                    }
                    "enum" => {
                        let symbols = member(object, "symbols")?
                            .as_array()
                            .ok_or("an enum's symbols must be an array")?;
                        let index = symbols
                            .iter()
                            .position(|s| s == value)
                            .ok_or_else(|| format!("{} is not one of {symbols:?}", short(value)))?;
                        write_long(out, index as i64);
                        Ok(())
                    }
                    "fixed" => {
                        let size = member(object, "size")?.as_u64().unwrap_or(0);
                        let bytes = json_bytes(value)?;
                        if bytes.len() as u64 != size {
                            return Err(format!("fixed of {size} bytes, found {}", bytes.len()));
                        }
                        out.extend_from_slice(&bytes);
                        Ok(())
                    }
                    "record" | "error" => {
                        let fields = member(object, "fields")?
                            .as_array()
                            .ok_or("a record's fields must be an array")?;
                        for field in fields {
                            let name = field.get("name").and_then(Value::as_str).unwrap_or("");
                            let schema =
                                field.get("type").ok_or("a record field without a type")?;
                            let given = value.get(name).or_else(|| field.get("default"));
                            write_json(schema, given.unwrap_or(&Value::Null), out)
                                .map_err(|e| format!("field `{name}`: {e}"))?;
                        }
                        Ok(())
                    }
                    kind => write_primitive(kind, logical, value, out),
                },
                Some(nested) => write_json(nested, value, out),
                None => Err(format!("an Avro type needs a \"type\": {avro}")),
            }
        }
        other => Err(format!("{other} is not an Avro type")),
    }
}

fn member<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a Value, String> {
    object
        .get(key)
        .ok_or_else(|| format!("an Avro type misses {key:?}"))
}

/// A value, shortened for an error message.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn write_primitive(
    kind: &str,
    logical: Option<&str>,
    value: &Value,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let wrong = || {
        Err(format!(
            "{} is not a value of Avro type `{kind}`",
            short(value)
        ))
    };
    match (kind, value) {
        ("null", Value::Null) => Ok(()),
        ("boolean", Value::Bool(b)) => {
            write_bool(out, *b);
            Ok(())
        }
        ("int" | "long", Value::String(text)) => match logical {
            Some(logical) => {
                let n = temporal(logical, text)?;
                write_long(out, n.as_i64().unwrap_or_default());
                Ok(())
            }
            None => wrong(),
        },
        ("int", Value::Number(n)) => match n.as_i64().filter(|n| i32::try_from(*n).is_ok()) {
            Some(n) => {
                write_long(out, n);
                Ok(())
            }
            None => wrong(),
        },
        ("long", Value::Number(n)) => match n.as_i64() {
            Some(n) => {
                write_long(out, n);
                Ok(())
            }
            None => wrong(),
        },
        ("float", Value::Number(n)) => {
            write_float(out, n.as_f64().unwrap_or_default() as f32);
            Ok(())
        }
        ("double", Value::Number(n)) => {
            write_double(out, n.as_f64().unwrap_or_default());
            Ok(())
        }
        ("string", Value::String(s)) => {
            write_bytes(out, s.as_bytes());
            Ok(())
        }
        // A `jsonb` value travels as its JSON text.
        ("string", other) if logical.is_none() => {
            write_bytes(out, other.to_string().as_bytes());
            Ok(())
        }
        ("bytes", _) => {
            write_bytes(out, &json_bytes(value)?);
            Ok(())
        }
        _ => wrong(),
    }
}

/// serde's bytes: an array of numbers (`Vec<u8>`), or a string.
fn json_bytes(value: &Value) -> Result<Vec<u8>, String> {
    match value {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Array(items) => items
            .iter()
            .map(|b| {
                b.as_u64()
                    .and_then(|b| u8::try_from(b).ok())
                    .ok_or_else(|| format!("{b} is not a byte"))
            })
            .collect(),
        other => Err(format!("{} is not bytes", short(other))),
    }
}

/// Whether a union's branch takes `value` (the first that does is written).
fn accepts(branch: &Value, value: &Value) -> bool {
    let (kind, logical, object) = match branch {
        Value::String(kind) => (kind.as_str(), None, None),
        Value::Object(object) => match object.get("type") {
            Some(Value::String(kind)) => (
                kind.as_str(),
                object.get("logicalType").and_then(Value::as_str),
                Some(object),
            ),
            Some(nested) => return accepts(nested, value),
            None => return false,
        },
        _ => return false,
    };
    match (kind, value) {
        ("null", Value::Null) => true,
        ("boolean", Value::Bool(_)) => true,
        ("int", Value::Number(n)) => n.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
        ("long", Value::Number(n)) => n.is_i64(),
        ("int" | "long", Value::String(_)) => logical.is_some(),
        ("float" | "double", Value::Number(_)) => true,
        ("string", Value::String(_)) => true,
        ("bytes" | "fixed", Value::Array(_) | Value::String(_)) => true,
        ("array", Value::Array(_)) => true,
        ("map" | "record" | "error", Value::Object(_)) => true,
        ("enum", Value::String(_)) => object
            .and_then(|o| o.get("symbols"))
            .and_then(Value::as_array)
            .is_some_and(|symbols| symbols.contains(value)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::WriterSchema;
    use crate::avro::codec::{AvroError, AvroReader};
    use serde_json::json;

    fn read_json(avro: &Value, with: bool, r: &mut AvroReader<'_>) -> Result<Value, AvroError> {
        WriterSchema::of_type(avro).unwrap().read_root_json(with, r)
    }

    fn round_trip(avro: &Value, with: bool, value: Value) -> Value {
        let mut out = Vec::new();
        write_json(avro, &value, &mut out).unwrap();
        let mut r = AvroReader::new(&out);
        let back = read_json(avro, with, &mut r).unwrap();
        r.finish().unwrap();
        back
    }

    #[test]
    fn serde_forms_round_trip_through_their_avro_types() {
        let timestamp = json!({"type": "long", "logicalType": "timestamp-millis"});
        assert_eq!(
            round_trip(&timestamp, false, json!("2026-12-03T10:15:00.123Z")),
            json!("2026-12-03T10:15:00.123Z")
        );
        assert_eq!(
            round_trip(&timestamp, true, json!(1_700_000_000_123_i64)),
            json!(1_700_000_000_123_i64)
        );
        let date = json!({"type": "int", "logicalType": "date"});
        assert_eq!(
            round_trip(&date, false, json!("1990-01-02")),
            json!("1990-01-02")
        );
        let status = json!({"type": "enum", "name": "S", "symbols": ["active", "closed"]});
        assert_eq!(round_trip(&status, false, json!("closed")), json!("closed"));
        let union = json!(["null", "long", "string"]);
        for value in [json!(null), json!(5), json!("x")] {
            assert_eq!(round_trip(&union, false, value.clone()), value);
        }
        let record = json!({"type": "record", "name": "R", "fields": [
            {"name": "a", "type": {"type": "array", "items": "double"}},
            {"name": "m", "type": {"type": "map", "values": "bytes"}}]});
        let value = json!({"a": [1.5, -2.0], "m": {"k": [0, 255]}});
        assert_eq!(round_trip(&record, false, value.clone()), value);
        assert_eq!(
            round_trip(&json!("string"), false, json!({"jsonb": [1]})),
            json!(r#"{"jsonb":[1]}"#)
        );
    }

    #[test]
    fn values_that_do_not_fit_are_named() {
        let mut out = Vec::new();
        let status = json!({"type": "enum", "name": "S", "symbols": ["active"]});
        assert_eq!(
            write_json(&status, &json!("gone"), &mut out),
            Err(r#""gone" is not one of [String("active")]"#.to_owned())
        );
        assert_eq!(
            write_json(&json!("int"), &json!(1_u64 << 33), &mut out),
            Err("8589934592 is not a value of Avro type `int`".to_owned())
        );
        assert_eq!(
            write_json(&json!(["null", "long"]), &json!("x"), &mut out),
            Err(r#""x" fits no type of the union ["null","long"]"#.to_owned())
        );
        let mut r = AvroReader::new(&[4]);
        assert_eq!(
            read_json(&status, false, &mut r).unwrap_err().reason,
            "enum symbol 2 does not exist"
        );
        let mut r = AvroReader::new(&[6]);
        assert_eq!(
            read_json(&json!(["null", "long"]), false, &mut r)
                .unwrap_err()
                .reason,
            "union branch 3 of 2"
        );
    }
}
