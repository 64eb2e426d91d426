//! Avro's binary encoding: the writers of each primitive, and [`AvroReader`],
//! which reads them back from bytes that came from the network and may be
//! anything: every read is bounds-checked and a bad datum is an
//! [`AvroError`] naming the byte, never a panic or a huge allocation.

use std::fmt;

/// Writes an Avro `long` (also `int`, enum indexes, union branches, lengths
/// and block counts): zig-zag, then a little-endian base-128 varint.
#[inline]
pub fn write_long(out: &mut Vec<u8>, value: i64) {
    let (bytes, len) = long_bytes(value);
    out.extend_from_slice(&bytes[..len]);
}

/// A `long`'s encoding, and how many of the bytes it takes.
#[inline]
fn long_bytes(value: i64) -> ([u8; 10], usize) {
    let mut bytes = [0; 10];
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    let mut len = 0;
    while n >= 0x80 {
        bytes[len] = (n as u8) | 0x80;
        n >>= 7;
        len += 1;
    }
    bytes[len] = n as u8;
    (bytes, len + 1)
}

/// Puts at `start` the length of the bytes written after it: a value
/// written straight into `out` becomes Avro `bytes` or `string`.
pub(crate) fn insert_length(out: &mut Vec<u8>, start: usize) {
    let (bytes, len) = long_bytes((out.len() - start) as i64);
    out.splice(start..start, bytes[..len].iter().copied());
}

/// Writes an Avro `boolean`: one byte, 0 or 1.
pub fn write_bool(out: &mut Vec<u8>, value: bool) {
    out.push(u8::from(value));
}

/// Writes an Avro `float`: 4 bytes, little-endian IEEE 754.
pub fn write_float(out: &mut Vec<u8>, value: f32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Writes an Avro `double`: 8 bytes, little-endian IEEE 754.
pub fn write_double(out: &mut Vec<u8>, value: f64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Writes Avro `bytes` (and `string`, as its UTF-8): the length, then the bytes.
pub fn write_bytes(out: &mut Vec<u8>, value: &[u8]) {
    write_long(out, value.len() as i64);
    out.extend_from_slice(value);
}

/// Writes the items of an array, or the entries of a map, as one block:
/// the count, the items, then the empty block that ends it (no block for none).
pub fn write_block<T>(out: &mut Vec<u8>, items: &[T], mut item: impl FnMut(&mut Vec<u8>, &T)) {
    if !items.is_empty() {
        write_long(out, items.len() as i64);
        for value in items {
            item(out, value);
        }
    }
    out.push(0);
}

/// Why a datum could not be read, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvroError {
    /// The offset of the byte the read failed at.
    pub at: usize,
    /// What was expected there.
    pub reason: String,
}

impl fmt::Display for AvroError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid Avro datum at byte {}: {}", self.at, self.reason)
    }
}

impl std::error::Error for AvroError {}

/// Reads Avro's binary encoding from a datum.
///
/// # Examples
///
/// ```
/// use outbox::avro::codec::{AvroReader, write_bytes, write_long};
///
/// let mut datum = Vec::new();
/// write_long(&mut datum, -3);
/// write_bytes(&mut datum, "ada".as_bytes());
/// let mut reader = AvroReader::new(&datum);
/// assert_eq!(reader.read_long()?, -3);
/// assert_eq!(reader.read_str()?, "ada");
/// reader.finish()?;
/// # Ok::<(), outbox::avro::codec::AvroError>(())
/// ```
#[derive(Debug, Clone)]
pub struct AvroReader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> AvroReader<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        AvroReader { data, at: 0 }
    }

    /// The bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.at
    }

    /// An error at the current byte.
    pub fn error(&self, reason: impl Into<String>) -> AvroError {
        AvroError {
            at: self.at,
            reason: reason.into(),
        }
    }

    /// Succeeds when every byte was read: a datum with bytes left over was
    /// written with another schema than the one read with.
    pub fn finish(&self) -> Result<(), AvroError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.error(format!("{n} bytes left after the record"))),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], AvroError> {
        if n > self.remaining() {
            return Err(self.error(format!("expected {n} bytes, {} left", self.remaining())));
        }
        let bytes = &self.data[self.at..self.at + n];
        self.at += n;
        Ok(bytes)
    }

    /// Reads a `long`.
    pub fn read_long(&mut self) -> Result<i64, AvroError> {
        let start = self.at;
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.data.get(self.at) else {
                self.at = start;
                return Err(self.error("a varint runs past the end"));
            };
            self.at += 1;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                // The tenth byte may hold one bit only.
                if shift == 63 && byte > 1 {
                    break;
                }
                return Ok(((n >> 1) as i64) ^ -((n & 1) as i64));
            }
        }
        self.at = start;
        Err(self.error("a varint longer than a long"))
    }

    /// Reads an `int`: a `long` in `i32`'s range.
    pub fn read_int(&mut self) -> Result<i32, AvroError> {
        let start = self.at;
        let n = self.read_long()?;
        i32::try_from(n).map_err(|_| AvroError {
            at: start,
            reason: format!("{n} is out of an int's range"),
        })
    }

    /// Reads a length (of bytes, a string, or a block): not negative.
    fn read_len(&mut self) -> Result<usize, AvroError> {
        let start = self.at;
        let n = self.read_long()?;
        usize::try_from(n).map_err(|_| AvroError {
            at: start,
            reason: format!("a length of {n}"),
        })
    }

    /// Reads a `boolean`.
    pub fn read_bool(&mut self) -> Result<bool, AvroError> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => {
                self.at -= 1;
                Err(self.error(format!("{other} is not a boolean (0 or 1)")))
            }
        }
    }

    /// Reads a `float`.
    pub fn read_float(&mut self) -> Result<f32, AvroError> {
        let bytes = self.take(4)?;
        Ok(f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// Reads a `double`.
    pub fn read_double(&mut self) -> Result<f64, AvroError> {
        let bytes = self.take(8)?;
        let mut le = [0; 8];
        le.copy_from_slice(bytes);
        Ok(f64::from_le_bytes(le))
    }

    /// Reads `bytes`.
    pub fn read_bytes(&mut self) -> Result<&'a [u8], AvroError> {
        let n = self.read_len()?;
        self.take(n)
    }

    /// Reads a `string`: `bytes` that are UTF-8.
    pub fn read_str(&mut self) -> Result<&'a str, AvroError> {
        let start = self.at;
        let bytes = self.read_bytes()?;
        std::str::from_utf8(bytes).map_err(|e| AvroError {
            at: start,
            reason: format!("a string that is not UTF-8 ({e})"),
        })
    }

    /// Reads `fixed` of `size` bytes.
    pub fn read_fixed(&mut self, size: usize) -> Result<&'a [u8], AvroError> {
        self.take(size)
    }

    /// Reads the items of an array or the entries of a map, block by block,
    /// calling `item` once per item. A block count may be negative (then a
    /// byte size follows, which lets readers skip it). `min_item` is the
    /// fewest bytes an item takes: a count the bytes left cannot hold is an
    /// error before any item is read (with 0, counts are capped instead).
    pub fn read_blocks(
        &mut self,
        min_item: usize,
        mut item: impl FnMut(&mut Self) -> Result<(), AvroError>,
    ) -> Result<(), AvroError> {
        /// Items of no bytes (nulls) in one datum, at most.
        const MAX_EMPTY_ITEMS: usize = 1 << 20;
        let mut total = 0usize;
        loop {
            let start = self.at;
            let count = self.read_long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                // The block's size in bytes: not needed to read it.
                self.read_len()?;
            }
            let count = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
            let fits = match min_item {
                0 => total.saturating_add(count) <= MAX_EMPTY_ITEMS,
                n => count <= self.remaining() / n,
            };
            if !fits {
                let left = self.remaining();
                self.at = start;
                return Err(self.error(format!(
                    "a block of {count} items does not fit in the {left} bytes left"
                )));
            }
            total += count;
            for _ in 0..count {
                item(self)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn longs_are_zig_zag_varints() {
        let encode = |n: i64| {
            let mut out = Vec::new();
            write_long(&mut out, n);
            out
        };
        assert_eq!(encode(0), [0]);
        assert_eq!(encode(-1), [1]);
        assert_eq!(encode(1), [2]);
        assert_eq!(encode(-64), [0x7f]);
        assert_eq!(encode(64), [0x80, 0x01]);
        assert_eq!(encode(i64::MIN).len(), 10);
    }

    #[test]
    fn bad_datums_are_errors_at_their_byte() {
        assert_eq!(
            AvroReader::new(&[0x80, 0x80])
                .read_long()
                .unwrap_err()
                .to_string(),
            "invalid Avro datum at byte 0: a varint runs past the end"
        );
        assert_eq!(
            AvroReader::new(&[0xff; 11]).read_long().unwrap_err().reason,
            "a varint longer than a long"
        );
        assert_eq!(
            AvroReader::new(&[0x80; 9].iter().copied().chain([0x02]).collect::<Vec<_>>())
                .read_long()
                .unwrap_err()
                .reason,
            "a varint longer than a long"
        );
        // A length far beyond the datum allocates nothing.
        let mut huge = Vec::new();
        write_long(&mut huge, 1 << 40);
        assert_eq!(
            AvroReader::new(&huge).read_bytes().unwrap_err().reason,
            "expected 1099511627776 bytes, 0 left"
        );
        assert_eq!(
            AvroReader::new(&[3]).read_bytes().unwrap_err().reason,
            "a length of -2"
        );
        let mut ints = Vec::new();
        write_long(&mut ints, i64::from(i32::MAX) + 1);
        assert_eq!(
            AvroReader::new(&ints).read_int().unwrap_err().reason,
            "2147483648 is out of an int's range"
        );
        assert_eq!(
            AvroReader::new(&[2]).read_bool().unwrap_err().reason,
            "2 is not a boolean (0 or 1)"
        );
        assert_eq!(
            AvroReader::new(&[2, 0xff]).read_str().unwrap_err().reason,
            "a string that is not UTF-8 (invalid utf-8 sequence of 1 bytes from index 0)"
        );
        // A block count the bytes left cannot hold.
        let mut blocks = Vec::new();
        write_long(&mut blocks, 1_000_000);
        let mut reader = AvroReader::new(&blocks);
        let error = reader
            .read_blocks(1, |r| r.read_long().map(drop))
            .unwrap_err();
        assert_eq!(
            error.reason,
            "a block of 1000000 items does not fit in the 0 bytes left"
        );
        assert_eq!(
            AvroReader::new(&[0, 1]).finish().unwrap_err().reason,
            "2 bytes left after the record"
        );
    }

    #[test]
    fn negative_block_counts_carry_a_size() {
        let mut datum = Vec::new();
        write_long(&mut datum, -2); // two items
        write_long(&mut datum, 2); // in two bytes
        write_long(&mut datum, 5);
        write_long(&mut datum, 6);
        datum.push(0);
        let mut items = Vec::new();
        AvroReader::new(&datum)
            .read_blocks(1, |r| r.read_long().map(|n| items.push(n)))
            .unwrap();
        assert_eq!(items, [5, 6]);
    }

    proptest! {
        #[test]
        fn primitives_round_trip(n in any::<i64>(), i in any::<i32>(), b in any::<bool>(),
                                 f in any::<f32>(), d in any::<f64>(), s in ".*", bytes in any::<Vec<u8>>()) {
            let mut out = Vec::new();
            write_long(&mut out, n);
            write_long(&mut out, i.into());
            write_bool(&mut out, b);
            write_float(&mut out, f);
            write_double(&mut out, d);
            write_bytes(&mut out, s.as_bytes());
            write_block(&mut out, &bytes, |out, b| write_long(out, (*b).into()));
            let mut r = AvroReader::new(&out);
            prop_assert_eq!(r.read_long()?, n);
            prop_assert_eq!(r.read_int()?, i);
            prop_assert_eq!(r.read_bool()?, b);
            prop_assert_eq!(r.read_float()?.to_bits(), f.to_bits());
            prop_assert_eq!(r.read_double()?.to_bits(), d.to_bits());
            prop_assert_eq!(r.read_str()?, s.as_str());
            let mut back = Vec::new();
            r.read_blocks(1, |r| r.read_int().map(|b| back.push(b as u8)))?;
            prop_assert_eq!(back, bytes);
            r.finish()?;
        }

        #[test]
        fn any_bytes_read_without_panic(data in any::<Vec<u8>>()) {
            let mut r = AvroReader::new(&data);
            let _ = r.read_long();
            let _ = r.read_str();
            let _ = r.read_blocks(0, |r| r.read_bytes().map(drop));
            let _ = r.read_double();
        }
    }
}
