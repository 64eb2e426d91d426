//! A serde `Serializer` that writes a value straight into an Avro datum by
//! its schema (an `avro_type` field, or a `with` module's output), without
//! building a `serde_json::Value` first. It walks the field's type as
//! compiled once ([`Node`]), not its JSON. It covers the shapes serde's JSON
//! gives the usual types; any other (a tuple, a tuple variant, a type that
//! does not fit the schema) makes [`write`] start again through the JSON
//! bridge, which knows them all and names what does not fit.

use std::fmt;

use serde::Serialize;
use serde::ser::{self, Impossible};
use serde_json::Value;

use super::codec::{write_bool, write_double, write_float};
use super::compiled::{Node, Record, Union};
use super::schema::temporal;

/// Writes `value` as a datum of `avro` (compiled: `node`).
#[inline]
pub(crate) fn write<T: Serialize + ?Sized>(
    node: &Node,
    avro: &Value,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let start = out.len();
    if value.serialize(AvroSer { node, out }).is_ok() {
        return Ok(());
    }
    bridged(avro, value, start, out)
}

/// A shape [`AvroSer`] leaves to the JSON bridge, or a value that does not
/// fit: the bridge writes it or says why not.
#[cold]
#[inline(never)]
fn bridged<T: Serialize + ?Sized>(
    avro: &Value,
    value: &T,
    start: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
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

struct AvroSer<'s, 'o> {
    node: &'s Node,
    out: &'o mut Vec<u8>,
}

/// Writes an Avro `long` ([`codec::write_long`](super::codec::write_long)),
/// the one-byte ones (union branches, counts, short lengths) inline.
#[inline(always)]
fn long(out: &mut Vec<u8>, n: i64) {
    let zigzag = ((n << 1) ^ (n >> 63)) as u64;
    if zigzag < 0x80 {
        out.push(zigzag as u8);
    } else {
        super::codec::write_long(out, n);
    }
}

/// Writes Avro `bytes` or `string`: the length, then the bytes.
#[inline(always)]
fn bytes(out: &mut Vec<u8>, value: &[u8]) {
    long(out, value.len() as i64);
    out.extend_from_slice(value);
}

/// Whether an enum holds `symbol`, and where.
fn symbol(symbols: &[Option<Box<str>>], symbol: &str) -> Option<usize> {
    symbols.iter().position(|s| s.as_deref() == Some(symbol))
}

impl<'s> AvroSer<'s, '_> {
    /// The union's branch `select` resolved, after writing its index; or the
    /// type itself when it is no union and `fits`.
    #[inline]
    fn pick(
        &mut self,
        select: impl FnOnce(&Union) -> Option<usize>,
        fits: impl FnOnce(&Node) -> bool,
    ) -> Result<&'s Node, Fallback> {
        match self.node {
            Node::Union(union) => {
                let index = select(union).ok_or(Fallback)?;
                long(self.out, index as i64);
                Ok(&union.branches[index])
            }
            node if fits(node) => Ok(node),
            _ => Err(Fallback),
        }
    }

    #[inline]
    fn integer(mut self, n: i64) -> Result<(), Fallback> {
        let narrow = i32::try_from(n).is_ok();
        let node = self.pick(
            |u| if narrow { u.narrow } else { u.wide },
            |node| {
                matches!(node, Node::Long(_) | Node::Float | Node::Double)
                    || (narrow && matches!(node, Node::Int(_)))
            },
        )?;
        match node {
            Node::Float => write_float(self.out, n as f32),
            Node::Double => write_double(self.out, n as f64),
            _ => long(self.out, n),
        }
        Ok(())
    }

    fn float(mut self, n: f64) -> Result<(), Fallback> {
        match self.pick(
            |u| u.float,
            |node| matches!(node, Node::Float | Node::Double),
        )? {
            Node::Float => write_float(self.out, n as f32),
            _ => write_double(self.out, n),
        }
        Ok(())
    }

    fn text(self, s: &str) -> Result<(), Fallback> {
        let node = match self.node {
            Node::Union(union) => {
                let mut chosen = None;
                for &index in &union.text {
                    match &union.branches[index] {
                        Node::Enum(symbols) if symbol(symbols, s).is_none() => {}
                        Node::Invalid => return Err(Fallback),
                        branch => {
                            chosen = Some((index, branch));
                            break;
                        }
                    }
                }
                let (index, branch) = chosen.ok_or(Fallback)?;
                long(self.out, index as i64);
                branch
            }
            node => node,
        };
        match node {
            Node::String | Node::Bytes => bytes(self.out, s.as_bytes()),
            Node::Int(Some(logical)) | Node::Long(Some(logical)) => {
                let n = temporal(logical, s).map_err(|_| Fallback)?;
                long(self.out, n.as_i64().ok_or(Fallback)?);
            }
            Node::Enum(symbols) => {
                let index = symbol(symbols, s).ok_or(Fallback)?;
                long(self.out, index as i64);
            }
            _ => return Err(Fallback),
        }
        Ok(())
    }
}

macro_rules! integers {
    ($($method:ident: $ty:ty),*) => {$(
        #[inline]
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
        self.pick(|u| u.boolean, |node| matches!(node, Node::Boolean))?;
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
        self.pick(|u| u.bytes, |node| matches!(node, Node::Bytes))?;
        bytes(self.out, v);
        Ok(())
    }

    fn serialize_none(mut self) -> Result<(), Fallback> {
        self.pick(|u| u.null, |node| matches!(node, Node::Null))?;
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
        let Node::Map(values) = self.pick(|u| u.map, |node| matches!(node, Node::Map(_)))? else {
            return Err(Fallback);
        };
        long(self.out, 1);
        bytes(self.out, variant.as_bytes());
        value.serialize(AvroSer {
            node: values,
            out: &mut *self.out,
        })?;
        self.out.push(0);
        Ok(())
    }

    fn serialize_seq(mut self, len: Option<usize>) -> Result<Items<'s, 'o>, Fallback> {
        let Node::Array(items) = self.pick(|u| u.array, |node| matches!(node, Node::Array(_)))?
        else {
            return Err(Fallback);
        };
        if let Some(len) = len
            && len > 0
        {
            long(self.out, len as i64);
        }
        Ok(Items {
            items,
            out: self.out,
            expected: len,
            count: 0,
            buffer: Vec::new(),
        })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Entries<'s, 'o>, Fallback> {
        self.entries(len)
    }

    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Entries<'s, 'o>, Fallback> {
        self.entries(Some(len))
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
        len: usize,
    ) -> Result<Variant<'s, 'o>, Fallback> {
        let Node::Map(values) = self.pick(|u| u.map, |node| matches!(node, Node::Map(_)))? else {
            return Err(Fallback);
        };
        if !matches!(**values, Node::Map(_) | Node::Record(_)) {
            return Err(Fallback);
        }
        long(self.out, 1);
        bytes(self.out, variant.as_bytes());
        Entries::new(values, self.out, Some(len)).map(Variant)
    }
}

impl<'s, 'o> AvroSer<'s, 'o> {
    /// A map's entries or a record's fields (`len`: how many, when known).
    fn entries(mut self, len: Option<usize>) -> Result<Entries<'s, 'o>, Fallback> {
        let target = self.pick(
            |u| u.entries,
            |node| matches!(node, Node::Map(_) | Node::Record(_)),
        )?;
        Entries::new(target, self.out, len)
    }
}

/// An array's items: straight into the datum after their count when it is
/// known first, else buffered (the block's count comes first).
struct Items<'s, 'o> {
    items: &'s Node,
    out: &'o mut Vec<u8>,
    expected: Option<usize>,
    count: usize,
    buffer: Vec<u8>,
}

impl ser::SerializeSeq for Items<'_, '_> {
    type Ok = ();
    type Error = Fallback;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Fallback> {
        self.count += 1;
        let out = match self.expected {
            Some(expected) if self.count > expected => return Err(Fallback),
            Some(_) => &mut *self.out,
            None => &mut self.buffer,
        };
        value.serialize(AvroSer {
            node: self.items,
            out,
        })
    }

    fn end(self) -> Result<(), Fallback> {
        match self.expected {
            Some(expected) if expected != self.count => return Err(Fallback),
            Some(_) => {}
            None if self.count > 0 => {
                long(self.out, self.count as i64);
                self.out.extend_from_slice(&self.buffer);
            }
            None => {}
        }
        self.out.push(0);
        Ok(())
    }
}

/// A map's entries, or a record's fields.
enum Entries<'s, 'o> {
    Map(MapEntries<'s, 'o>),
    Record(Fields<'s, 'o>),
}

/// A map's entries: straight into the datum after their count when it is
/// known first, else buffered.
struct MapEntries<'s, 'o> {
    values: &'s Node,
    out: &'o mut Vec<u8>,
    expected: Option<usize>,
    count: usize,
    buffer: Vec<u8>,
    /// A key is written, its value not yet.
    keyed: bool,
}

/// A record's fields, in the schema's order: each straight into the datum
/// when it comes in that order, else buffered until those before it are.
struct Fields<'s, 'o> {
    record: &'s Record,
    out: &'o mut Vec<u8>,
    /// The fields written so far: the next one due.
    next: usize,
    /// Per field, the bytes of one that came before its turn.
    pending: Vec<Option<Vec<u8>>>,
    /// The key of [`ser::SerializeMap`], until its value comes.
    key: Option<String>,
}

impl<'s, 'o> Entries<'s, 'o> {
    fn new(target: &'s Node, out: &'o mut Vec<u8>, len: Option<usize>) -> Result<Self, Fallback> {
        match target {
            Node::Map(values) => {
                if let Some(len) = len
                    && len > 0
                {
                    long(out, len as i64);
                }
                Ok(Entries::Map(MapEntries {
                    values,
                    out,
                    expected: len,
                    count: 0,
                    buffer: Vec::new(),
                    keyed: false,
                }))
            }
            Node::Record(record) if !record.broken => Ok(Entries::Record(Fields {
                record,
                out,
                next: 0,
                pending: Vec::new(),
                key: None,
            })),
            _ => Err(Fallback),
        }
    }

    /// Entry or field `key`, then `value`.
    fn entry<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Fallback> {
        match self {
            Entries::Map(map) => {
                map.key()?;
                bytes(map.sink(), key.as_bytes());
                map.value(value)
            }
            Entries::Record(fields) => fields.field(key, value),
        }
    }

    /// Writes what is left; returns the datum, for what follows.
    fn finish(self) -> Result<&'o mut Vec<u8>, Fallback> {
        match self {
            Entries::Map(map) => {
                if map.keyed {
                    return Err(Fallback);
                }
                match map.expected {
                    Some(expected) if expected != map.count => return Err(Fallback),
                    Some(_) => {}
                    None if map.count > 0 => {
                        long(map.out, map.count as i64);
                        map.out.extend_from_slice(&map.buffer);
                    }
                    None => {}
                }
                map.out.push(0);
                Ok(map.out)
            }
            // A field the value lacks is left to the bridge, which writes
            // its default.
            Entries::Record(fields) if fields.next == fields.record.fields.len() => Ok(fields.out),
            Entries::Record(_) => Err(Fallback),
        }
    }
}

impl MapEntries<'_, '_> {
    /// Where the entries go.
    fn sink(&mut self) -> &mut Vec<u8> {
        if self.expected.is_some() {
            &mut *self.out
        } else {
            &mut self.buffer
        }
    }

    /// One more entry, its key to be written.
    fn key(&mut self) -> Result<(), Fallback> {
        self.count += 1;
        match self.expected {
            _ if self.keyed => Err(Fallback),
            Some(expected) if self.count > expected => Err(Fallback),
            _ => {
                self.keyed = true;
                Ok(())
            }
        }
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Fallback> {
        if !std::mem::replace(&mut self.keyed, false) {
            return Err(Fallback);
        }
        let node = self.values;
        value.serialize(AvroSer {
            node,
            out: self.sink(),
        })
    }
}

impl Fields<'_, '_> {
    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), Fallback> {
        let record = self.record;
        let at = record.position(name, self.next).ok_or(Fallback)?;
        let node = &record.fields[at].1;
        if at == self.next {
            value.serialize(AvroSer {
                node,
                out: &mut *self.out,
            })?;
            self.next += 1;
            while let Some(bytes) = self.pending.get_mut(self.next).and_then(Option::take) {
                self.out.extend_from_slice(&bytes);
                self.next += 1;
            }
            Ok(())
        } else if at > self.next {
            if self.pending.is_empty() {
                self.pending.resize_with(record.fields.len(), || None);
            }
            if self.pending[at].is_some() {
                // A field twice: the bridge keeps the last.
                return Err(Fallback);
            }
            let mut bytes = Vec::new();
            value.serialize(AvroSer {
                node,
                out: &mut bytes,
            })?;
            self.pending[at] = Some(bytes);
            Ok(())
        } else {
            // A field twice.
            Err(Fallback)
        }
    }
}

impl ser::SerializeMap for Entries<'_, '_> {
    type Ok = ();
    type Error = Fallback;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Fallback> {
        match self {
            Entries::Map(map) => {
                map.key()?;
                key.serialize(Key(KeySink::Avro(map.sink())))
            }
            Entries::Record(fields) => {
                let mut text = fields.key.take().unwrap_or_default();
                text.clear();
                key.serialize(Key(KeySink::Text(&mut text)))?;
                fields.key = Some(text);
                Ok(())
            }
        }
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Fallback> {
        match self {
            Entries::Map(map) => map.value(value),
            Entries::Record(fields) => {
                let key = fields.key.take().ok_or(Fallback)?;
                fields.field(&key, value)
            }
        }
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
        self.entry(key, value)
    }

    fn end(self) -> Result<(), Fallback> {
        self.finish().map(drop)
    }
}

/// A struct variant's fields inside its one-entry map.
struct Variant<'s, 'o>(Entries<'s, 'o>);

impl ser::SerializeStructVariant for Variant<'_, '_> {
    type Ok = ();
    type Error = Fallback;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Fallback> {
        self.0.entry(key, value)
    }

    fn end(self) -> Result<(), Fallback> {
        // The end of the one-entry map around the fields.
        self.0.finish()?.push(0);
        Ok(())
    }
}

/// Where a map's key goes: into the datum as an Avro `string`, or kept as
/// text (a record's field name).
enum KeySink<'k> {
    Avro(&'k mut Vec<u8>),
    Text(&'k mut String),
}

/// A map's key: what serde's JSON makes a string of (text, a unit variant,
/// either in a newtype or `Some`); any other is left to the bridge.
struct Key<'k>(KeySink<'k>);

impl Key<'_> {
    fn text(self, s: &str) -> Result<(), Fallback> {
        match self.0 {
            KeySink::Avro(out) => bytes(out, s.as_bytes()),
            KeySink::Text(text) => text.push_str(s),
        }
        Ok(())
    }
}

macro_rules! refuse {
    ($($method:ident($($ty:ty),*);)*) => {$(
        fn $method(self, $(_: $ty),*) -> Result<(), Fallback> {
            Err(Fallback)
        }
    )*};
}

impl ser::Serializer for Key<'_> {
    type Ok = ();
    type Error = Fallback;
    type SerializeSeq = Impossible<(), Fallback>;
    type SerializeTuple = Impossible<(), Fallback>;
    type SerializeTupleStruct = Impossible<(), Fallback>;
    type SerializeTupleVariant = Impossible<(), Fallback>;
    type SerializeMap = Impossible<(), Fallback>;
    type SerializeStruct = Impossible<(), Fallback>;
    type SerializeStructVariant = Impossible<(), Fallback>;

    refuse! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_bytes(&[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(&'static str);
    }

    fn serialize_char(self, v: char) -> Result<(), Fallback> {
        self.text(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<(), Fallback> {
        self.text(v)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Fallback> {
        value.serialize(self)
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

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Fallback> {
        Err(Fallback)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Fallback> {
        Err(Fallback)
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

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Fallback> {
        Err(Fallback)
    }

    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Fallback> {
        Err(Fallback)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Fallback> {
        Err(Fallback)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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

    /// Fields in the order of their names: serde's JSON map keeps them so.
    #[derive(Serialize)]
    struct Xy {
        x: i32,
        y: i32,
    }

    #[derive(Serialize)]
    struct Outer {
        tags: Vec<String>,
        at: Option<Point>,
        name: &'static str,
        scores: BTreeMap<String, Option<f64>>,
    }

    /// Milliseconds, the way `chrono::serde::ts_milliseconds` hands them over.
    struct Millis(i64);

    impl Serialize for Millis {
        fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_i64(self.0)
        }
    }

    /// A map whose length is not known up front.
    struct Unsized(Vec<(&'static str, i64)>);

    impl Serialize for Unsized {
        fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use ser::SerializeMap;
            let mut map = serializer.serialize_map(None)?;
            for (k, v) in &self.0 {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }

    /// A sequence whose length is not known up front.
    struct UnsizedSeq(Vec<i64>);

    impl Serialize for UnsizedSeq {
        fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(self.0.iter().filter(|_| true))
        }
    }

    fn direct<T: Serialize + ?Sized>(avro: &Value, value: &T) -> Result<Vec<u8>, Fallback> {
        let node = Node::compile(avro);
        let mut out = Vec::new();
        value.serialize(AvroSer {
            node: &node,
            out: &mut out,
        })?;
        Ok(out)
    }

    fn bridge(avro: &Value, json: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        super::super::bridge::write_json(avro, json, &mut out).unwrap();
        out
    }

    /// The datum this serializer writes from the compiled type is the one
    /// the JSON bridge writes.
    fn same_as_bridge<T: Serialize + ?Sized>(avro: &Value, value: &T) {
        let fast = direct(avro, value).expect("written here");
        assert_eq!(
            fast,
            bridge(avro, &serde_json::to_value(value).unwrap()),
            "{avro}"
        );
        let mut out = vec![9];
        write(&Node::compile(avro), avro, value, &mut out).unwrap();
        assert_eq!(out[1..], fast, "{avro}");
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
            &BTreeMap::from([("a", 1), ("b", 2)]),
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
    fn longs_are_written_as_the_codec_writes_them() {
        for n in (-300..300).chain([i64::MIN, i64::MAX, 1 << 40, -(1 << 40)]) {
            let (mut ours, mut codec) = (Vec::new(), Vec::new());
            long(&mut ours, n);
            super::super::codec::write_long(&mut codec, n);
            assert_eq!(ours, codec, "{n}");
        }
    }

    #[test]
    fn primitives() {
        same_as_bridge(&json!("null"), &());
        same_as_bridge(&json!("boolean"), &true);
        same_as_bridge(&json!("int"), &-7_i32);
        same_as_bridge(&json!("int"), &40_u16);
        same_as_bridge(&json!("long"), &(1_i64 << 40));
        same_as_bridge(&json!("long"), &u32::MAX);
        same_as_bridge(&json!("float"), &1.5_f32);
        same_as_bridge(&json!("float"), &3_i64);
        same_as_bridge(&json!("double"), &-0.25_f64);
        same_as_bridge(&json!("double"), &12_u8);
        same_as_bridge(&json!("string"), &"ada");
        same_as_bridge(&json!("string"), &'é');
        same_as_bridge(&json!("bytes"), &"raw");
        same_as_bridge(&json!({"type": "string"}), &"nested object");
        same_as_bridge(&json!({"type": {"type": "long"}}), &5_i64);
        same_as_bridge(
            &json!({"type": "string", "logicalType": "uuid"}),
            &"67e55044-10b1-426f-9247-bb680e5fe0c8",
        );
    }

    #[test]
    fn logical_types() {
        let millis = json!({"type": "long", "logicalType": "timestamp-millis"});
        same_as_bridge(&millis, &Millis(1_796_252_400_123));
        same_as_bridge(&millis, &"2026-11-23T16:32:07.5+01:00");
        same_as_bridge(
            &json!({"type": "long", "logicalType": "timestamp-micros"}),
            &"2026-11-23T16:32:07.123456Z",
        );
        same_as_bridge(
            &json!({"type": "int", "logicalType": "date"}),
            &"2026-12-03",
        );
        same_as_bridge(
            &json!({"type": "int", "logicalType": "time-millis"}),
            &"10:15:00.250",
        );
        same_as_bridge(
            &json!({"type": "long", "logicalType": "local-timestamp-micros"}),
            &"2026-12-03T10:15:00.123456",
        );
        same_as_bridge(
            &json!(["null", {"type": "long", "logicalType": "timestamp-millis"}]),
            &Some(Millis(-5)),
        );
        same_as_bridge(
            &json!(["null", {"type": "long", "logicalType": "timestamp-millis"}]),
            &Some("1970-01-01T00:00:01Z"),
        );
    }

    #[test]
    fn unions_null_first_and_value_first() {
        let null_first = json!(["null", "string"]);
        same_as_bridge(&null_first, &None::<String>);
        same_as_bridge(&null_first, &Some("x"));
        let value_first = json!(["string", "null"]);
        same_as_bridge(&value_first, &None::<String>);
        same_as_bridge(&value_first, &Some("x"));
        let numbers = json!(["null", "int", "long", "double"]);
        same_as_bridge(&numbers, &Some(1_i64));
        same_as_bridge(&numbers, &Some(1_i64 << 40));
        same_as_bridge(&numbers, &Some(2.5));
        same_as_bridge(&numbers, &None::<i64>);
        let wide_first = json!(["double", "int"]);
        same_as_bridge(&wide_first, &3_i32);
        let texts = json!([{"type": "enum", "name": "E", "symbols": ["a"]}, "string"]);
        same_as_bridge(&texts, &"a");
        same_as_bridge(&texts, &"b");
        // Not "bytes": the bridge takes an array of numbers for bytes.
        let kinds = json!(["boolean",
            {"type": "array", "items": "long"}, {"type": "map", "values": "long"}]);
        same_as_bridge(&kinds, &false);
        same_as_bridge(&kinds, &vec![1_i64, 2]);
        same_as_bridge(&kinds, &BTreeMap::from([("k", 3_i64)]));
        let record_or_null = json!(["null", {"type": "record", "name": "P", "fields": [
            {"name": "x", "type": "int"}, {"name": "y", "type": "int"}]}]);
        same_as_bridge(&record_or_null, &Some(Point { y: 1, x: 2 }));
        same_as_bridge(&record_or_null, &None::<Point>);
    }

    #[test]
    fn arrays_maps_enums_records_nested() {
        same_as_bridge(
            &json!({"type": "array", "items": "long"}),
            &Vec::<i64>::new(),
        );
        same_as_bridge(
            &json!({"type": "array", "items": "long"}),
            &UnsizedSeq(vec![1, -2, 3]),
        );
        same_as_bridge(
            &json!({"type": "array", "items": "long"}),
            &UnsizedSeq(vec![]),
        );
        same_as_bridge(
            &json!({"type": "map", "values": "long"}),
            &BTreeMap::<String, i64>::new(),
        );
        same_as_bridge(
            &json!({"type": "map", "values": "long"}),
            &Unsized(vec![("a", 1), ("b", 2)]),
        );
        same_as_bridge(&json!({"type": "map", "values": "long"}), &Unsized(vec![]));
        same_as_bridge(
            &json!({"type": "map", "values": "long"}),
            &Xy { x: 2, y: 1 },
        );
        let symbols = json!({"type": "enum", "name": "S",
            "symbols": ["active", "suspended", "moved"]});
        same_as_bridge(&symbols, &Status::Active);
        let point = json!({"type": "record", "name": "P", "fields": [
            {"name": "x", "type": "int"}, {"name": "y", "type": "int"}]});
        same_as_bridge(&point, &BTreeMap::from([("y", 1), ("x", 2)]));
        let outer = json!({"type": "record", "name": "O", "fields": [
            {"name": "name", "type": "string"},
            {"name": "scores", "type": {"type": "map", "values": ["null", "double"]}},
            {"name": "at", "type": ["null", point]},
            {"name": "tags", "type": {"type": "array", "items": "string"}}]});
        same_as_bridge(
            &outer,
            &Outer {
                tags: vec!["a".into(), "b".into()],
                at: Some(Point { y: 4, x: 3 }),
                name: "n",
                scores: BTreeMap::from([("p".into(), Some(0.5)), ("q".into(), None)]),
            },
        );
        let status = json!(["string", {"type": "map", "values": {"type": "record", "name": "S",
            "fields": [{"name": "reason", "type": "string"}]}}]);
        same_as_bridge(&status, &Status::Suspended { reason: "r".into() });
        same_as_bridge(&status, &Status::Active);
        let as_map =
            json!(["string", {"type": "map", "values": {"type": "map", "values": "string"}}]);
        same_as_bridge(&as_map, &Status::Suspended { reason: "r".into() });
        same_as_bridge(
            &json!({"type": "array", "items": {"type": "array", "items": ["null", "long"]}}),
            &vec![vec![Some(1), None], vec![]],
        );
    }

    #[test]
    fn other_shapes_go_through_the_bridge() {
        // A tuple: the bridge writes it.
        let pair = json!({"type": "array", "items": "long"});
        assert!(direct(&pair, &(1, 2)).is_err());
        let mut out = Vec::new();
        write(&Node::compile(&pair), &pair, &(1, 2), &mut out).unwrap();
        assert_eq!(out, bridge(&pair, &json!([1, 2])));
        let int = json!("int");
        assert_eq!(
            write(&Node::compile(&int), &int, &(1_i64 << 40), &mut Vec::new()),
            Err("1099511627776 is not a value of Avro type `int`".to_owned())
        );
        // A record missing a field: the bridge writes its default.
        let with_default = json!({"type": "record", "name": "P", "fields": [
            {"name": "x", "type": "int"}, {"name": "z", "type": "long", "default": 7},
            {"name": "y", "type": "int"}]});
        assert!(direct(&with_default, &Point { y: 1, x: 2 }).is_err());
        let mut out = vec![1];
        write(
            &Node::compile(&with_default),
            &with_default,
            &Point { y: 1, x: 2 },
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [1, 4, 14, 2]);
        // Non-string map keys, `fixed`, a named type, a map whose size lies.
        let map = json!({"type": "map", "values": "long"});
        assert!(direct(&map, &BTreeMap::from([(1, 2)])).is_err());
        assert!(direct(&json!({"type": "fixed", "name": "F", "size": 2}), &"ab").is_err());
        assert!(direct(&json!("Named"), &"x").is_err());
        let broken = json!(["null", {"type": "record", "name": "B", "fields": [{"name": "x"}]}]);
        assert!(direct(&broken, &Point { y: 1, x: 2 }).is_err());
        assert!(direct(&broken, &None::<Point>).is_ok());
        let stops = json!(["null", {"name": "x"}, "long"]);
        assert!(direct(&stops, &1_i64).is_err());
    }
}
