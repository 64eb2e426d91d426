//! [`AvroField`]: the Avro type and the JSON Schema of a field's Rust type.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::codec::{
    AvroError, AvroReader, write_bool, write_bytes, write_double, write_float, write_long,
};

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
/// use outbox::avro::codec::{AvroError, AvroReader, write_long};
/// use serde_json::{Value, json};
///
/// #[derive(Debug, PartialEq)]
/// enum Status { Active, Closed }
///
/// impl AvroField for Status {
///     fn avro_schema() -> Value {
///         json!({"type": "enum", "name": "Status", "symbols": ["active", "closed"]})
///     }
///     fn json_schema() -> Value {
///         json!({"enum": ["active", "closed"]})
///     }
///     fn write_avro(&self, out: &mut Vec<u8>) {
///         write_long(out, match self { Status::Active => 0, Status::Closed => 1 });
///     }
///     fn read_avro(reader: &mut AvroReader<'_>) -> Result<Self, AvroError> {
///         match reader.read_long()? {
///             0 => Ok(Status::Active),
///             1 => Ok(Status::Closed),
///             n => Err(reader.error(format!("no status {n}"))),
///         }
///     }
/// }
///
/// assert_eq!(<Option<Status>>::avro_schema(), json!(["null", Status::avro_schema()]));
/// assert_eq!(<Vec<i64>>::avro_schema(), json!({"type": "array", "items": "long"}));
///
/// let mut datum = Vec::new();
/// Some(Status::Closed).write_avro(&mut datum);
/// assert_eq!(datum, [2, 2]); // the union's second branch, then symbol 1
/// assert_eq!(<Option<Status>>::read_avro(&mut AvroReader::new(&datum))?, Some(Status::Closed));
/// # Ok::<(), AvroError>(())
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

    /// Appends the value's Avro binary encoding (of [`avro_schema`](AvroField::avro_schema)).
    fn write_avro(&self, out: &mut Vec<u8>);

    /// Reads a value written by [`write_avro`](AvroField::write_avro).
    ///
    /// # Errors
    ///
    /// [`AvroError`] when the bytes are not such a value (cut short, out of
    /// the type's range, not UTF-8, ...).
    fn read_avro(reader: &mut AvroReader<'_>) -> Result<Self, AvroError>
    where
        Self: Sized;
}

/// An integer read as a `long`, checked against the Rust type's range.
fn read_ranged<T: TryFrom<i64>>(reader: &mut AvroReader<'_>, what: &str) -> Result<T, AvroError> {
    let at = reader.clone();
    let n = reader.read_long()?;
    T::try_from(n).map_err(|_| at.error(format!("{n} is out of {what}'s range")))
}

/// JSON Schema of an integer type's range.
fn integer(min: i128, max: i128) -> Value {
    json!({"type": "integer", "minimum": min, "maximum": max})
}

macro_rules! integers {
    ($($ty:ty => $avro:literal;)*) => {$(
        impl AvroField for $ty {
            fn avro_schema() -> Value {
                Value::from($avro)
            }
            fn json_schema() -> Value {
                integer(<$ty>::MIN.into(), <$ty>::MAX.into())
            }
            fn write_avro(&self, out: &mut Vec<u8>) {
                write_long(out, i64::from(*self));
            }
            fn read_avro(reader: &mut AvroReader<'_>) -> Result<Self, AvroError> {
                read_ranged(reader, stringify!($ty))
            }
        }
    )*};
}

integers! {
    i16 => "int";
    u16 => "int";
    i32 => "int";
    u32 => "long";
    i64 => "long";
}

/// A type written as one Avro primitive by a codec function.
macro_rules! primitives {
    ($($ty:ty => $avro:literal, $json:literal, $write:ident, $read:ident;)*) => {$(
        impl AvroField for $ty {
            fn avro_schema() -> Value {
                Value::from($avro)
            }
            fn json_schema() -> Value {
                json!({"type": $json})
            }
            fn write_avro(&self, out: &mut Vec<u8>) {
                $write(out, *self);
            }
            fn read_avro(reader: &mut AvroReader<'_>) -> Result<Self, AvroError> {
                reader.$read()
            }
        }
    )*};
}

primitives! {
    bool => "boolean", "boolean", write_bool, read_bool;
    f32 => "float", "number", write_float, read_float;
    f64 => "double", "number", write_double, read_double;
}

impl AvroField for String {
    fn avro_schema() -> Value {
        Value::from("string")
    }
    fn json_schema() -> Value {
        json!({"type": "string"})
    }
    fn write_avro(&self, out: &mut Vec<u8>) {
        write_bytes(out, self.as_bytes());
    }
    fn read_avro(reader: &mut AvroReader<'_>) -> Result<Self, AvroError> {
        reader.read_str().map(str::to_owned)
    }
}

impl AvroField for Vec<u8> {
    fn avro_schema() -> Value {
        Value::from("bytes")
    }
    /// serde writes bytes as an array of numbers.
    fn json_schema() -> Value {
        json!({"type": "array", "items": integer(0, 255)})
    }
    fn write_avro(&self, out: &mut Vec<u8>) {
        write_bytes(out, self);
    }
    fn read_avro(reader: &mut AvroReader<'_>) -> Result<Self, AvroError> {
        reader.read_bytes().map(<[u8]>::to_vec)
    }
}

impl<T: AvroField> AvroField for Option<T> {
    /// `null` first, so that the field's default can be `null`; a field whose
    /// default is a value gets the value's type first instead (the record
    /// builder reorders, as Avro wants a default of the union's first type,
    /// and such a field is then written through its JSON).
    fn avro_schema() -> Value {
        json!(["null", T::avro_schema()])
    }
    fn json_schema() -> Value {
        json!({"anyOf": [{"type": "null"}, T::json_schema()]})
    }
    fn write_avro(&self, out: &mut Vec<u8>) {
        match self {
            None => write_long(out, 0),
            Some(value) => {
                write_long(out, 1);
                value.write_avro(out);
            }
        }
    }
    fn read_avro(reader: &mut AvroReader<'_>) -> Result<Self, AvroError> {
        let at = reader.clone();
        match reader.read_long()? {
            0 => Ok(None),
            1 => T::read_avro(reader).map(Some),
            n => Err(at.error(format!("union branch {n} of [\"null\", T]"))),
        }
    }
}

impl<T: AvroField> AvroField for Vec<T> {
    fn avro_schema() -> Value {
        json!({"type": "array", "items": T::avro_schema()})
    }
    fn json_schema() -> Value {
        json!({"type": "array", "items": T::json_schema()})
    }
    fn write_avro(&self, out: &mut Vec<u8>) {
        super::codec::write_block(out, self, |out, item| item.write_avro(out));
    }
    fn read_avro(reader: &mut AvroReader<'_>) -> Result<Self, AvroError> {
        let mut items = Vec::new();
        // Every mapped type takes a byte at least.
        reader.read_blocks(1, |r| {
            items.push(T::read_avro(r)?);
            Ok(())
        })?;
        Ok(items)
    }
}

/// A map's entries as one block: key, value, ... then the end.
fn write_map<'a, T: AvroField + 'a>(
    out: &mut Vec<u8>,
    len: usize,
    entries: impl Iterator<Item = (&'a String, &'a T)>,
) {
    if len > 0 {
        write_long(out, len as i64);
        for (key, value) in entries {
            write_bytes(out, key.as_bytes());
            value.write_avro(out);
        }
    }
    out.push(0);
}

fn read_map<T: AvroField>(
    reader: &mut AvroReader<'_>,
    mut insert: impl FnMut(String, T),
) -> Result<(), AvroError> {
    reader.read_blocks(1, |r| {
        let key = r.read_str()?.to_owned();
        insert(key, T::read_avro(r)?);
        Ok(())
    })
}

impl<T: AvroField, S: std::hash::BuildHasher + Default> AvroField for HashMap<String, T, S> {
    fn avro_schema() -> Value {
        json!({"type": "map", "values": T::avro_schema()})
    }
    fn json_schema() -> Value {
        json!({"type": "object", "additionalProperties": T::json_schema()})
    }
    fn write_avro(&self, out: &mut Vec<u8>) {
        write_map(out, self.len(), self.iter());
    }
    fn read_avro(reader: &mut AvroReader<'_>) -> Result<Self, AvroError> {
        let mut map = HashMap::default();
        read_map(reader, |k, v| {
            map.insert(k, v);
        })?;
        Ok(map)
    }
}

impl<T: AvroField> AvroField for BTreeMap<String, T> {
    fn avro_schema() -> Value {
        json!({"type": "map", "values": T::avro_schema()})
    }
    fn json_schema() -> Value {
        json!({"type": "object", "additionalProperties": T::json_schema()})
    }
    fn write_avro(&self, out: &mut Vec<u8>) {
        write_map(out, self.len(), self.iter());
    }
    fn read_avro(reader: &mut AvroReader<'_>) -> Result<Self, AvroError> {
        let mut map = BTreeMap::new();
        read_map(reader, |k, v| {
            map.insert(k, v);
        })?;
        Ok(map)
    }
}

impl AvroField for chrono::DateTime<chrono::Utc> {
    /// Microseconds: PostgreSQL's `timestamptz` holds no finer; pick
    /// milliseconds with `avro_type = "timestamp-millis"`. Nanoseconds are cut.
    fn avro_schema() -> Value {
        json!({"type": "long", "logicalType": "timestamp-micros"})
    }
    fn json_schema() -> Value {
        json!({"type": "string", "format": "date-time"})
    }
    fn write_avro(&self, out: &mut Vec<u8>) {
        write_long(out, self.timestamp_micros());
    }
    fn read_avro(reader: &mut AvroReader<'_>) -> Result<Self, AvroError> {
        let at = reader.clone();
        let micros = reader.read_long()?;
        chrono::DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| at.error(format!("{micros} µs is out of a timestamp's range")))
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
    fn write_avro(&self, out: &mut Vec<u8>) {
        write_long(out, self.and_utc().timestamp_micros());
    }
    fn read_avro(reader: &mut AvroReader<'_>) -> Result<Self, AvroError> {
        chrono::DateTime::<chrono::Utc>::read_avro(reader).map(|at| at.naive_utc())
    }
}

impl AvroField for chrono::NaiveDate {
    fn avro_schema() -> Value {
        json!({"type": "int", "logicalType": "date"})
    }
    fn json_schema() -> Value {
        json!({"type": "string", "format": "date"})
    }
    fn write_avro(&self, out: &mut Vec<u8>) {
        let days = (*self - chrono::DateTime::UNIX_EPOCH.date_naive()).num_days();
        write_long(out, days);
    }
    fn read_avro(reader: &mut AvroReader<'_>) -> Result<Self, AvroError> {
        let at = reader.clone();
        let days = reader.read_int()?;
        chrono::Duration::try_days(days.into())
            .and_then(|d| {
                chrono::DateTime::UNIX_EPOCH
                    .date_naive()
                    .checked_add_signed(d)
            })
            .ok_or_else(|| at.error(format!("{days} days is out of a date's range")))
    }
}

impl AvroField for uuid::Uuid {
    fn avro_schema() -> Value {
        json!({"type": "string", "logicalType": "uuid"})
    }
    fn json_schema() -> Value {
        json!({"type": "string", "format": "uuid"})
    }
    fn write_avro(&self, out: &mut Vec<u8>) {
        write_bytes(
            out,
            self.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .as_bytes(),
        );
    }
    fn read_avro(reader: &mut AvroReader<'_>) -> Result<Self, AvroError> {
        let at = reader.clone();
        let text = reader.read_str()?;
        text.parse()
            .map_err(|e| at.error(format!("{text:?} is not a uuid ({e})")))
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
    fn write_avro(&self, out: &mut Vec<u8>) {
        // The text straight into `out`, then its length in front of it.
        let start = out.len();
        // Writing a `Value` to a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, self);
        super::codec::insert_length(out, start);
    }
    fn read_avro(reader: &mut AvroReader<'_>) -> Result<Self, AvroError> {
        let at = reader.clone();
        let text = reader.read_str()?;
        serde_json::from_str(text).map_err(|e| at.error(format!("a string that is not JSON ({e})")))
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
    fn json_values_travel_as_their_text() {
        for value in [json!(null), json!({"a": "x".repeat(200), "b": [1, 2.5]})] {
            let mut out = vec![7];
            value.write_avro(&mut out);
            let mut reader = AvroReader::new(&out[1..]);
            assert_eq!(reader.read_str().unwrap(), value.to_string());
            let mut reader = AvroReader::new(&out[1..]);
            assert_eq!(Value::read_avro(&mut reader).unwrap(), value);
            reader.finish().unwrap();
        }
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
