//! The Confluent wire format of an Avro value: a zero byte, the writer
//! schema's registry id (4 bytes, big-endian), then the datum.

use crate::error::{DecodeError, Truncated};

/// The first byte of every frame.
const MAGIC: u8 = 0;

/// Magic byte and schema id.
pub(crate) const HEADER_LEN: usize = 5;

/// The frame's first bytes: the magic byte and `schema_id`. Enqueue writes id
/// 0 (no registry is called in a business transaction); the relay writes the
/// real id in place before sending.
pub(crate) fn header(schema_id: u32) -> [u8; HEADER_LEN] {
    let [a, b, c, d] = schema_id.to_be_bytes();
    [MAGIC, a, b, c, d]
}

/// The schema id and the datum of a frame.
pub(crate) fn parse(value: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    let invalid = |reason: String| DecodeError::InvalidAvroFrame {
        reason,
        value: Truncated::lossy(value),
    };
    let Some((head, datum)) = value.split_first_chunk::<HEADER_LEN>() else {
        return Err(invalid(format!(
            "{} bytes, shorter than the 5 of the magic byte and the schema id",
            value.len()
        )));
    };
    if head[0] != MAGIC {
        return Err(invalid(format!(
            "the first byte is {}, not the magic byte 0",
            head[0]
        )));
    }
    let id = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    if id == 0 {
        return Err(invalid(
            "schema id 0: the record was sent before its schema was registered \
             (a relay without a schema registry?)"
                .into(),
        ));
    }
    Ok((id, datum))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_the_magic_byte_the_id_and_the_datum() {
        let mut value = header(0x0102_0304).to_vec();
        value.extend_from_slice(b"\x02");
        assert_eq!(value, b"\x00\x01\x02\x03\x04\x02");
        assert_eq!(parse(&value).unwrap(), (0x0102_0304, &b"\x02"[..]));
    }

    #[test]
    fn short_frames_another_magic_byte_and_id_zero_are_refused_by_name() {
        let reason = |value: &[u8]| match parse(value).unwrap_err() {
            DecodeError::InvalidAvroFrame { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason(b"\x00\x01").contains("2 bytes"));
        assert!(reason(b"{\"a\":1}").contains("first byte is 123"));
        assert!(reason(b"\x00\x00\x00\x00\x00\x02").contains("schema id 0"));
    }
}
