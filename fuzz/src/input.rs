//! The fuzz inputs' byte layouts: read through `arbitrary::Unstructured`, and
//! written back by [`Writer`] so seeds can be made from real messages.
//!
//! Layout primitives: a flag is one byte (odd is true), a length is a `u16`
//! little-endian, bytes are a length then that many bytes (fewer when the
//! input ends first), and the last field takes the rest.

use arbitrary::{Arbitrary, Result, Unstructured};
use outbox::EncodedMessage;

fn flag(u: &mut Unstructured<'_>) -> Result<bool> {
    bool::arbitrary(u)
}

fn bytes<'a>(u: &mut Unstructured<'a>) -> Result<&'a [u8]> {
    let len = usize::from(u16::arbitrary(u)?);
    u.bytes(len.min(u.len()))
}

fn optional<'a>(u: &mut Unstructured<'a>) -> Result<Option<&'a [u8]>> {
    Ok(if flag(u)? { Some(bytes(u)?) } else { None })
}

fn text(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(String::from_utf8_lossy(bytes(u)?).into_owned())
}

/// Writes what the readers above read.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn flag(&mut self, value: bool) -> &mut Self {
        self.0.push(u8::from(value));
        self
    }

    pub fn byte(&mut self, value: u8) -> &mut Self {
        self.0.push(value);
        self
    }

    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        let len = u16::try_from(value.len()).expect("a seed field under 64 KiB");
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(value);
        self
    }

    pub fn optional(&mut self, value: Option<&[u8]>) -> &mut Self {
        self.flag(value.is_some());
        if let Some(value) = value {
            self.bytes(value);
        }
        self
    }

    pub fn rest(&mut self, value: &[u8]) -> &mut Self {
        self.0.extend_from_slice(value);
        self
    }
}

/// A Kafka record as a consumer receives it: any topic, key, headers and value.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    /// Names are `&str` in rdkafka's API; values may be absent.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub value: Option<Vec<u8>>,
}

impl RawRecord {
    /// Layout: topic, optional key, header count (one byte), then per header
    /// a name and an optional value, then a flag and the value (the rest).
    pub fn read(data: &[u8]) -> Result<Self> {
        let mut u = Unstructured::new(data);
        let topic = text(&mut u)?;
        let key = optional(&mut u)?.map(<[u8]>::to_vec);
        let count = u8::arbitrary(&mut u)?;
        let mut headers = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let name = text(&mut u)?;
            let value = optional(&mut u)?.map(<[u8]>::to_vec);
            headers.push((name, value));
        }
        let value = flag(&mut u)?.then(|| u.take_rest().to_vec());
        Ok(RawRecord {
            topic,
            key,
            headers,
            value,
        })
    }

    pub fn write(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes(self.topic.as_bytes()).optional(self.key.as_deref());
        w.byte(u8::try_from(self.headers.len()).expect("under 256 headers"));
        for (name, value) in &self.headers {
            w.bytes(name.as_bytes()).optional(value.as_deref());
        }
        w.flag(self.value.is_some());
        if let Some(value) = &self.value {
            w.rest(value);
        }
        w.0
    }

    /// The record a producer sends for `encoded` on `topic`.
    pub fn from_encoded(topic: &str, encoded: &EncodedMessage) -> Self {
        RawRecord {
            topic: topic.to_owned(),
            key: Some(encoded.key.clone()),
            headers: encoded
                .headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), Some(value.as_bytes().to_vec())))
                .collect(),
            value: Some(encoded.value.clone()),
        }
    }

    /// Headers as `Message::decode` takes them.
    pub fn header_refs(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_deref()))
    }
}

/// An outbox row as the relay reads it: partition key, the `headers` column
/// in PostgreSQL's binary `text[]` format, and the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    pub partition_key: String,
    pub headers_column: Vec<u8>,
    pub payload: Vec<u8>,
}

impl RawRow {
    /// Layout: partition key, headers column, then the payload (the rest).
    pub fn read(data: &[u8]) -> Result<Self> {
        let mut u = Unstructured::new(data);
        Ok(RawRow {
            partition_key: text(&mut u)?,
            headers_column: bytes(&mut u)?.to_vec(),
            payload: u.take_rest().to_vec(),
        })
    }

    pub fn write(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes(self.partition_key.as_bytes())
            .bytes(&self.headers_column)
            .rest(&self.payload);
        w.0
    }
}

/// A payload handed to a derived model: which model, which event, which
/// versions the message carries (bit `n` is version `n + 1`), then the JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadInput {
    pub model: u8,
    pub event: u8,
    pub versions: u8,
    pub json: Vec<u8>,
}

impl PayloadInput {
    pub fn read(data: &[u8]) -> Result<Self> {
        let mut u = Unstructured::new(data);
        Ok(PayloadInput {
            model: u8::arbitrary(&mut u)?,
            event: u8::arbitrary(&mut u)?,
            versions: u8::arbitrary(&mut u)?,
            json: u.take_rest().to_vec(),
        })
    }

    pub fn write(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.byte(self.model)
            .byte(self.event)
            .byte(self.versions)
            .rest(&self.json);
        w.0
    }
}

/// Attribute contents for a macro: a flags byte (see [`crate::tokens`]), then
/// source texts separated by NUL.
#[derive(Debug, Clone, PartialEq)]
pub struct MacroInput {
    pub flags: u8,
    pub parts: Vec<String>,
}

impl MacroInput {
    pub fn read(data: &[u8]) -> Option<Self> {
        let (flags, rest) = data.split_first()?;
        let text = std::str::from_utf8(rest).ok()?;
        Some(MacroInput {
            flags: *flags,
            parts: text.split('\0').map(str::to_owned).collect(),
        })
    }

    pub fn write(&self) -> Vec<u8> {
        let mut out = vec![self.flags];
        out.extend_from_slice(self.parts.join("\0").as_bytes());
        out
    }

    /// Part `index`, empty when absent.
    pub fn part(&self, index: usize) -> &str {
        self.parts.get(index).map_or("", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_read_back_what_is_written() {
        let record = RawRecord {
            topic: "accounts".into(),
            key: Some(b"42".to_vec()),
            headers: vec![
                ("event".into(), Some(b"created".to_vec())),
                ("x-null".into(), None),
            ],
            value: Some(b"{\"a\":1}".to_vec()),
        };
        assert_eq!(RawRecord::read(&record.write()).unwrap(), record);
        let no_value = RawRecord {
            key: None,
            value: None,
            ..record
        };
        assert_eq!(RawRecord::read(&no_value.write()).unwrap(), no_value);

        let row = RawRow {
            partition_key: "7".into(),
            headers_column: vec![0, 0, 0, 1, 0xff],
            payload: b"{}".to_vec(),
        };
        assert_eq!(RawRow::read(&row.write()).unwrap(), row);

        let payload = PayloadInput {
            model: 2,
            event: 3,
            versions: 0b101,
            json: b"{\"id\":1}".to_vec(),
        };
        assert_eq!(PayloadInput::read(&payload.write()).unwrap(), payload);

        let input = MacroInput {
            flags: 1,
            parts: vec!["topic = \"a\"".into(), "skip".into()],
        };
        assert_eq!(MacroInput::read(&input.write()).unwrap(), input);
    }
}
