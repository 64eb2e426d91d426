//! A serde `Serializer` that writes a value straight into an Avro datum by
//! its schema (an `avro_type` field), without building a `serde_json::Value`
//! first. It covers the shapes serde's JSON gives the usual types; any other
//! (a tuple, a struct or tuple variant, a type that does not fit the schema)
//! makes [`write`] start again through the JSON bridge, which knows them all
//! and names what does not fit.

use std::fmt;

use serde::Serialize;
use serde::ser::{self, Impossible};
use serde_json::Value;

use super::codec::{write_bool, write_bytes, write_double, write_float, write_long};
use super::schema::temporal;

/// Writes `value` as a datum of `avro`.
pub(crate) fn write<T: Serialize + ?Sized>(
    avro: &Value,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let start = out.len();
    if value.serialize(AvroSer { avro, out }).is_ok() {
        return Ok(());
    }
    // A shape this serializer leaves to the JSON bridge, or a value that does
    // not fit: the bridge writes it or says why not.
    out.truncate(start);
    let json = serde_json::to_value(value).map_err(|e| format!("its serializer failed: {e}"))?;
    super::bridge::write_json(avro, &json, out)
}

/// Not written here: [`write`] falls back to the JSON bridge.
#[derive(Debug)]
pub(crate) struct Fallback;

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("left to the JSON bridge")
    }
}

impl std::error::Error for Fallback {}

impl ser::Error for Fallback {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Fallback
    }
}

/// A schema reduced to what decides the encoding.
enum Kind<'a> {
    Primitive(&'a str, Option<&'a str>),
    Union(&'a [Value]),
    Array(&'a Value),
    Map(&'a Value),
    Enum(&'a [Value]),
    Record(&'a [Value]),
}

fn kind(avro: &Value) -> Result<Kind<'_>, Fallback> {
    match avro {
        Value::String(name) => Ok(Kind::Primitive(name, None)),
        Value::Array(branches) => Ok(Kind::Union(branches)),
        Value::Object(object) => {
            let logical = object.get("logicalType").and_then(Value::as_str);
            match object.get("type") {
                Some(Value::String(kind)) => match kind.as_str() {
                    "array" => object.get("items").map(Kind::Array).ok_or(Fallback),
                    "map" => object.get("values").map(Kind::Map).ok_or(Fallback),
                    "enum" => object
                        .get("symbols")
                        .and_then(Value::as_array)
                        .map(|s| Kind::Enum(s))
                        .ok_or(Fallback),
                    "record" | "error" => object
                        .get("fields")
                        .and_then(Value::as_array)
                        .map(|f| Kind::Record(f))
                        .ok_or(Fallback),
                    other => Ok(Kind::Primitive(other, logical)),
                },
                Some(nested) => kind(nested),
                None => Err(Fallback),
            }
        }
        _ => Err(Fallback),
    }
}

struct AvroSer<'s, 'o> {
    avro: &'s Value,
    out: &'o mut Vec<u8>,
}

impl<'s> AvroSer<'s, '_> {
    /// The union's first branch `fits`, after writing its index; or the
    /// schema itself when it is no union.
    fn branch(&mut self, fits: impl Fn(&Kind<'_>) -> bool) -> Result<Kind<'s>, Fallback> {
        match kind(self.avro)? {
            Kind::Union(branches) => {
                for (index, branch) in branches.iter().enumerate() {
                    let k = kind(branch)?;
                    if fits(&k) {
                        write_long(self.out, index as i64);
                        return Ok(k);
                    }
                }
                Err(Fallback)
            }
            other if fits(&other) => Ok(other),
            _ => Err(Fallback),
        }
    }

    fn integer(mut self, n: i64) -> Result<(), Fallback> {
        let fits_int = i32::try_from(n).is_ok();
        match self.branch(|k| {
            matches!(k, Kind::Primitive("long" | "float" | "double", _))
                || (fits_int && matches!(k, Kind::Primitive("int", _)))
        })? {
            Kind::Primitive("float", _) => write_float(self.out, n as f32),
            Kind::Primitive("double", _) => write_double(self.out, n as f64),
            _ => write_long(self.out, n),
        }
        Ok(())
    }

    fn float(mut self, n: f64) -> Result<(), Fallback> {
        match self.branch(|k| matches!(k, Kind::Primitive("float" | "double", _)))? {
            Kind::Primitive("float", _) => write_float(self.out, n as f32),
            _ => write_double(self.out, n),
        }
        Ok(())
    }

    fn text(mut self, s: &str) -> Result<(), Fallback> {
        let fits = |k: &Kind<'_>| match k {
            Kind::Primitive("string" | "bytes", _) => true,
            Kind::Primitive("int" | "long", Some(_)) => true,
            Kind::Enum(symbols) => symbols.iter().any(|symbol| symbol == s),
            _ => false,
        };
        match self.branch(fits)? {
            Kind::Enum(symbols) => {
                let index = symbols
                    .iter()
                    .position(|symbol| symbol == s)
                    .ok_or(Fallback)?;
                write_long(self.out, index as i64);
            }
            Kind::Primitive("int" | "long", Some(logical)) => {
                let n = temporal(logical, s).map_err(|_| Fallback)?;
                write_long(self.out, n.as_i64().ok_or(Fallback)?);
            }
            _ => write_bytes(self.out, s.as_bytes()),
        }
        Ok(())
    }
}

macro_rules! integers {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method(self, v: $ty) -> Result<(), Fallback> {
            self.integer(i64::try_from(v).map_err(|_| Fallback)?)
        }
    )*};
}

impl<'s, 'o> ser::Serializer for AvroSer<'s, 'o> {
    type Ok = ();
    type Error = Fallback;
    type SerializeSeq = Items<'s, 'o>;
    type SerializeTuple = Impossible<(), Fallback>;
    type SerializeTupleStruct = Impossible<(), Fallback>;
    type SerializeTupleVariant = Impossible<(), Fallback>;
    type SerializeMap = Entries<'s, 'o>;
    type SerializeStruct = Entries<'s, 'o>;
    type SerializeStructVariant = Variant<'s, 'o>;

    integers!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
              serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64);

    fn serialize_bool(mut self, v: bool) -> Result<(), Fallback> {
        self.branch(|k| matches!(k, Kind::Primitive("boolean", _)))?;
        write_bool(self.out, v);
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), Fallback> {
        self.float(f64::from(v))
    }

    fn serialize_f64(self, v: f64) -> Result<(), Fallback> {
        self.float(v)
    }

    fn serialize_char(self, v: char) -> Result<(), Fallback> {
        self.text(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<(), Fallback> {
        self.text(v)
    }

    fn serialize_bytes(mut self, v: &[u8]) -> Result<(), Fallback> {
        self.branch(|k| matches!(k, Kind::Primitive("bytes", _)))?;
        write_bytes(self.out, v);
        Ok(())
    }

    fn serialize_none(mut self) -> Result<(), Fallback> {
        self.branch(|k| matches!(k, Kind::Primitive("null", _)))?;
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Fallback> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Fallback> {
        self.serialize_none()
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Fallback> {
        self.serialize_none()
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Fallback> {
        self.text(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Fallback> {
        value.serialize(self)
    }

    /// serde's JSON: `{"variant": value}`, a map of one entry.
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Fallback> {
        let Kind::Map(values) = self.branch(|k| matches!(k, Kind::Map(_)))? else {
            return Err(Fallback);
        };
        write_long(self.out, 1);
        write_bytes(self.out, variant.as_bytes());
        value.serialize(AvroSer {
            avro: values,
            out: self.out,
        })?;
        self.out.push(0);
        Ok(())
    }

    fn serialize_seq(mut self, _: Option<usize>) -> Result<Items<'s, 'o>, Fallback> {
        let Kind::Array(items) = self.branch(|k| matches!(k, Kind::Array(_)))? else {
            return Err(Fallback);
        };
        Ok(Items {
            items,
            out: self.out,
            buffer: Vec::new(),
            count: 0,
        })
    }

    fn serialize_map(mut self, _: Option<usize>) -> Result<Entries<'s, 'o>, Fallback> {
        let target = self.branch(|k| matches!(k, Kind::Map(_) | Kind::Record(_)))?;
        Ok(Entries::new(target, self.out))
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Entries<'s, 'o>, Fallback> {
        self.serialize_map(None)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Fallback> {
        Err(Fallback)
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Fallback> {
        Err(Fallback)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Fallback> {
        Err(Fallback)
    }

    /// serde's JSON: `{"variant": {fields}}`, a map of one entry.
    fn serialize_struct_variant(
        mut self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Variant<'s, 'o>, Fallback> {
        let Kind::Map(values) = self.branch(|k| matches!(k, Kind::Map(_)))? else {
            return Err(Fallback);
        };
        let target = kind(values)?;
        if !matches!(target, Kind::Map(_) | Kind::Record(_)) {
            return Err(Fallback);
        }
        write_long(self.out, 1);
        write_bytes(self.out, variant.as_bytes());
        Ok(Variant(Entries::new(target, self.out)))
    }
}

/// An array's items, buffered: the block's count comes first.
struct Items<'s, 'o> {
    items: &'s Value,
    out: &'o mut Vec<u8>,
    buffer: Vec<u8>,
    count: i64,
}

impl ser::SerializeSeq for Items<'_, '_> {
    type Ok = ();
    type Error = Fallback;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Fallback> {
        self.count += 1;
        value.serialize(AvroSer {
            avro: self.items,
            out: &mut self.buffer,
        })
    }

    fn end(self) -> Result<(), Fallback> {
        if self.count > 0 {
            write_long(self.out, self.count);
            self.out.extend_from_slice(&self.buffer);
        }
        self.out.push(0);
        Ok(())
    }
}

/// A map's entries (buffered: the count comes first), or a record's fields
/// (buffered by name: the schema's order is not the value's).
struct Entries<'s, 'o> {
    target: Kind<'s>,
    out: &'o mut Vec<u8>,
    key: Option<String>,
    written: Vec<(String, Vec<u8>)>,
}

impl<'s, 'o> Entries<'s, 'o> {
    fn new(target: Kind<'s>, out: &'o mut Vec<u8>) -> Self {
        Entries {
            target,
            out,
            key: None,
            written: Vec::new(),
        }
    }

    fn value<T: Serialize + ?Sized>(&mut self, key: String, value: &T) -> Result<(), Fallback> {
        let schema = match &self.target {
            Kind::Map(values) => *values,
            Kind::Record(fields) => fields
                .iter()
                .find(|f| f.get("name").and_then(Value::as_str) == Some(key.as_str()))
                .and_then(|f| f.get("type"))
                .ok_or(Fallback)?,
            _ => return Err(Fallback),
        };
        let mut bytes = Vec::new();
        value.serialize(AvroSer {
            avro: schema,
            out: &mut bytes,
        })?;
        self.written.push((key, bytes));
        Ok(())
    }

    /// Writes the entries or fields; returns the datum, for what follows them.
    fn finish(self) -> Result<&'o mut Vec<u8>, Fallback> {
        match self.target {
            Kind::Map(_) => {
                if !self.written.is_empty() {
                    write_long(self.out, self.written.len() as i64);
                    for (key, bytes) in &self.written {
                        write_bytes(self.out, key.as_bytes());
                        self.out.extend_from_slice(bytes);
                    }
                }
                self.out.push(0);
                Ok(self.out)
            }
            Kind::Record(fields) => {
                // In the schema's order; a field the value lacks is left to
                // the bridge, which writes its default.
                for field in fields {
                    let name = field.get("name").and_then(Value::as_str).ok_or(Fallback)?;
                    let (_, bytes) = self
                        .written
                        .iter()
                        .find(|(key, _)| key == name)
                        .ok_or(Fallback)?;
                    self.out.extend_from_slice(bytes);
                }
                Ok(self.out)
            }
            _ => Err(Fallback),
        }
    }
}

impl ser::SerializeMap for Entries<'_, '_> {
    type Ok = ();
    type Error = Fallback;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Fallback> {
        match serde_json::to_value(key) {
            Ok(Value::String(key)) => {
                self.key = Some(key);
                Ok(())
            }
            _ => Err(Fallback),
        }
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Fallback> {
        let key = self.key.take().ok_or(Fallback)?;
        self.value(key, value)
    }

    fn end(self) -> Result<(), Fallback> {
        self.finish().map(drop)
    }
}

impl ser::SerializeStruct for Entries<'_, '_> {
    type Ok = ();
    type Error = Fallback;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Fallback> {
        self.value(key.to_owned(), value)
    }

    fn end(self) -> Result<(), Fallback> {
        self.finish().map(drop)
    }
}

/// A struct variant's fields inside its one-entry map.
pub(crate) struct Variant<'s, 'o>(Entries<'s, 'o>);

impl ser::SerializeStructVariant for Variant<'_, '_> {
    type Ok = ();
    type Error = Fallback;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Fallback> {
        self.0.value(key.to_owned(), value)
    }

    fn end(self) -> Result<(), Fallback> {
        // The end of the one-entry map around the fields.
        self.0.finish()?.push(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Serialize)]
    #[serde(rename_all = "snake_case")]
    enum Status {
        Active,
        Suspended { reason: String },
        Moved(String),
    }

    #[derive(Serialize)]
    struct Point {
        y: i32,
        x: i32,
    }

    /// The datum this serializer writes is the one the JSON bridge writes.
    fn same_as_bridge<T: Serialize>(avro: &Value, value: &T) {
        let mut fast = Vec::new();
        value
            .serialize(AvroSer {
                avro,
                out: &mut fast,
            })
            .expect("written here");
        let mut bridge = Vec::new();
        super::super::bridge::write_json(avro, &serde_json::to_value(value).unwrap(), &mut bridge)
            .unwrap();
        assert_eq!(fast, bridge, "{avro}");
    }

    #[test]
    fn the_usual_shapes_are_written_as_the_bridge_writes_them() {
        let status = json!(["string", {"type": "map", "values": "string"}]);
        same_as_bridge(&status, &Status::Active);
        same_as_bridge(&status, &Status::Moved("x".into()));
        let point = json!({"type": "record", "name": "P", "fields": [
            {"name": "x", "type": "int"}, {"name": "y", "type": "long"}]});
        same_as_bridge(&point, &Point { y: 2, x: -1 });
        same_as_bridge(
            &json!({"type": "array", "items": ["null", "double"]}),
            &vec![Some(1.5), None],
        );
        same_as_bridge(
            &json!({"type": "map", "values": "long"}),
            &std::collections::BTreeMap::from([("a", 1), ("b", 2)]),
        );
        same_as_bridge(
            &json!({"type": "long", "logicalType": "timestamp-millis"}),
            &"2026-12-03T10:00:00Z",
        );
        same_as_bridge(
            &json!({"type": "enum", "name": "E", "symbols": ["a", "b"]}),
            &"b",
        );
    }

    #[test]
    fn other_shapes_go_through_the_bridge() {
        let status = json!(["string", {"type": "map", "values": {"type": "record", "name": "S",
            "fields": [{"name": "reason", "type": "string"}]}}]);
        same_as_bridge(&status, &Status::Suspended { reason: "r".into() });
        // A tuple: the bridge writes it.
        let pair = json!({"type": "array", "items": "long"});
        assert!(
            (1, 2)
                .serialize(AvroSer {
                    avro: &pair,
                    out: &mut Vec::new()
                })
                .is_err()
        );
        let mut out = Vec::new();
        write(&pair, &(1, 2), &mut out).unwrap();
        let mut bridge = Vec::new();
        super::super::bridge::write_json(&pair, &json!([1, 2]), &mut bridge).unwrap();
        assert_eq!(out, bridge);
        assert_eq!(
            write(&json!("int"), &(1_i64 << 40), &mut Vec::new()),
            Err("1099511627776 is not a value of Avro type `int`".to_owned())
        );
    }
}
