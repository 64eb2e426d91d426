//! [`AvroField`]: the Avro type and the JSON Schema of a field's Rust type.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

/// A field type with a known Avro type: what `#[derive(Outboxed)]` puts in a
/// model's generated schemas (`#[outbox(avro)]`) for a field of this type.
///
/// Implemented for the types a Diesel model holds: `bool`, `i16`, `i32`,
/// `u16` (Avro `int`), `i64`, `u32` (`long`), `f32`, `f64`, `String`,
/// `Vec<u8>` (`bytes`), `Option<T>` (`["null", T]`, default `null`), `Vec<T>`
/// (`array`), `HashMap`/`BTreeMap<String, T>` (`map`),
/// `chrono::DateTime<Utc>` (`long`, `timestamp-micros`: PostgreSQL's
/// precision), `chrono::NaiveDateTime` (`local-timestamp-micros`),
/// `chrono::NaiveDate` (`date`), `uuid::Uuid` (`string`, `uuid`) and
/// `serde_json::Value` (`string`: the JSON text). `u64`, `i8`, `u8` and the
/// 128-bit integers have none: Avro has no unsigned or 128-bit integer, and
/// `u8` is left out so that `Vec<u8>` can be `bytes`. A field of another type
/// names its Avro type with `#[outbox(avro_type = "...")]`, or its type
/// implements this trait.
///
/// # Examples
///
/// An enum stored as text, given an Avro `enum`:
///
/// ```
/// use outbox::avro::AvroField;
/// use serde_json::{Value, json};
///
/// enum Status { Active, Closed }
///
/// impl AvroField for Status {
///     fn avro_schema() -> Value {
///         json!({"type": "enum", "name": "Status", "symbols": ["active", "closed"]})
///     }
///     fn json_schema() -> Value {
///         json!({"enum": ["active", "closed"]})
///     }
/// }
///
/// assert_eq!(<Option<Status>>::avro_schema(), json!(["null", Status::avro_schema()]));
/// assert_eq!(<Vec<i64>>::avro_schema(), json!({"type": "array", "items": "long"}));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no Avro mapping",
    label = "no Avro type for this field",
    note = "give the field its Avro type with `#[outbox(avro_type = \"...\")]` (e.g. \"string\", \"long\", \"timestamp-millis\", or a schema as JSON text), or implement `outbox::avro::AvroField` for the type"
)]
pub trait AvroField {
    /// The field's Avro type, as in a schema's JSON: a primitive name
    /// (`"long"`), a logical type (`{"type": "long", "logicalType":
    /// "timestamp-micros"}`), a union (an array), or a complex type.
    fn avro_schema() -> Value;

    /// The JSON Schema of the field's JSON payload form (what serde writes).
    fn json_schema() -> Value;
}

macro_rules! primitive {
    ($($ty:ty => $avro:literal, $json:expr;)*) => {$(
        impl AvroField for $ty {
            fn avro_schema() -> Value {
                Value::from($avro)
            }
            fn json_schema() -> Value {
                $json
            }
        }
    )*};
}

/// JSON Schema of an integer type's range.
fn integer(min: i128, max: i128) -> Value {
    json!({"type": "integer", "minimum": min, "maximum": max})
}

primitive! {
    bool => "boolean", json!({"type": "boolean"});
    i16 => "int", integer(i16::MIN.into(), i16::MAX.into());
    u16 => "int", integer(0, u16::MAX.into());
    i32 => "int", integer(i32::MIN.into(), i32::MAX.into());
    u32 => "long", integer(0, u32::MAX.into());
    i64 => "long", integer(i64::MIN.into(), i64::MAX.into());
    f32 => "float", json!({"type": "number"});
    f64 => "double", json!({"type": "number"});
    String => "string", json!({"type": "string"});
}

impl AvroField for Vec<u8> {
    fn avro_schema() -> Value {
        Value::from("bytes")
    }
    /// serde writes bytes as an array of numbers.
    fn json_schema() -> Value {
        json!({"type": "array", "items": integer(0, 255)})
    }
}

impl<T: AvroField> AvroField for Option<T> {
    /// `null` first, so that the field's default can be `null`; a field whose
    /// default is a value gets the value's type first instead (the record
    /// builder reorders, as Avro wants a default of the union's first type).
    fn avro_schema() -> Value {
        json!(["null", T::avro_schema()])
    }
    fn json_schema() -> Value {
        json!({"anyOf": [{"type": "null"}, T::json_schema()]})
    }
}

impl<T: AvroField> AvroField for Vec<T> {
    fn avro_schema() -> Value {
        json!({"type": "array", "items": T::avro_schema()})
    }
    fn json_schema() -> Value {
        json!({"type": "array", "items": T::json_schema()})
    }
}

impl<T: AvroField, S> AvroField for HashMap<String, T, S> {
    fn avro_schema() -> Value {
        json!({"type": "map", "values": T::avro_schema()})
    }
    fn json_schema() -> Value {
        json!({"type": "object", "additionalProperties": T::json_schema()})
    }
}

impl<T: AvroField> AvroField for BTreeMap<String, T> {
    fn avro_schema() -> Value {
        json!({"type": "map", "values": T::avro_schema()})
    }
    fn json_schema() -> Value {
        json!({"type": "object", "additionalProperties": T::json_schema()})
    }
}

impl AvroField for chrono::DateTime<chrono::Utc> {
    /// Microseconds: PostgreSQL's `timestamptz` holds no finer; pick
    /// milliseconds with `avro_type = "timestamp-millis"`.
    fn avro_schema() -> Value {
        json!({"type": "long", "logicalType": "timestamp-micros"})
    }
    fn json_schema() -> Value {
        json!({"type": "string", "format": "date-time"})
    }
}

impl AvroField for chrono::NaiveDateTime {
    fn avro_schema() -> Value {
        json!({"type": "long", "logicalType": "local-timestamp-micros"})
    }
    /// chrono writes `2026-12-03T10:15:00.123456`, without an offset.
    fn json_schema() -> Value {
        json!({"type": "string"})
    }
}

impl AvroField for chrono::NaiveDate {
    fn avro_schema() -> Value {
        json!({"type": "int", "logicalType": "date"})
    }
    fn json_schema() -> Value {
        json!({"type": "string", "format": "date"})
    }
}

impl AvroField for uuid::Uuid {
    fn avro_schema() -> Value {
        json!({"type": "string", "logicalType": "uuid"})
    }
    fn json_schema() -> Value {
        json!({"type": "string", "format": "uuid"})
    }
}

impl AvroField for Value {
    /// A `jsonb` column: its JSON text (Avro has no type for any JSON value).
    fn avro_schema() -> Value {
        Value::from("string")
    }
    fn json_schema() -> Value {
        json!({})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_arrays_of_other_types_are_told_apart() {
        assert_eq!(<Vec<u8>>::avro_schema(), json!("bytes"));
        assert_eq!(
            <Vec<Vec<u8>>>::avro_schema(),
            json!({"type": "array", "items": "bytes"})
        );
        assert_eq!(
            <Vec<String>>::avro_schema(),
            json!({"type": "array", "items": "string"})
        );
    }

    #[test]
    fn containers_nest() {
        assert_eq!(
            <Option<HashMap<String, Vec<uuid::Uuid>>>>::avro_schema(),
            json!(["null", {"type": "map", "values": {"type": "array",
                "items": {"type": "string", "logicalType": "uuid"}}}])
        );
        assert_eq!(
            <BTreeMap<String, i32>>::json_schema(),
            json!({"type": "object", "additionalProperties":
                {"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX}})
        );
    }
}
