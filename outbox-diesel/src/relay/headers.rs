//! The `headers text[]` column read without a `String` per element.

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::sql_types::{Array, Text};

/// A row's headers as PostgreSQL sent them (the binary array format), with the
/// place of each element: one allocation per row instead of one per string.
#[derive(Debug, FromSqlRow, AsExpression)]
#[diesel(sql_type = Array<Text>)]
pub(crate) struct Headers {
    bytes: Vec<u8>,
    /// Start and end of each element in `bytes`, every one valid UTF-8.
    spans: Vec<(usize, usize)>,
}

impl Headers {
    /// Name and value pairs, in order (a trailing name without value is dropped,
    /// as enqueue never writes one).
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans
            .chunks_exact(2)
            .map(|pair| (self.text(pair[0]), self.text(pair[1])))
    }

    fn text(&self, (start, end): (usize, usize)) -> &str {
        // Checked when parsed.
        std::str::from_utf8(&self.bytes[start..end]).unwrap_or_default()
    }

    /// Parses PostgreSQL's binary array format: ndim, has-null flag, element
    /// type, (length, lower bound) per dimension, then (length, bytes) per element.
    pub(crate) fn parse(bytes: Vec<u8>) -> Result<Self, String> {
        let mut reader = Reader {
            bytes: &bytes,
            at: 0,
        };
        let dimensions = reader.int("dimension count")?;
        let _has_null = reader.int("null flag")?;
        let _element_type = reader.int("element type")?;
        let elements = match dimensions {
            0 => 0,
            1 => {
                let length = reader.int("length")?;
                let _lower_bound = reader.int("lower bound")?;
                usize::try_from(length).map_err(|_| format!("headers array of length {length}"))?
            }
            n => return Err(format!("headers array of {n} dimensions, expected 1")),
        };
        // Each element takes at least its 4-byte length: a count the bytes cannot
        // hold fails below ("cut short") instead of allocating for it first.
        let mut spans = Vec::with_capacity(elements.min(bytes.len().saturating_sub(reader.at) / 4));
        for index in 0..elements {
            let length = usize::try_from(reader.int("element length")?)
                .map_err(|_| format!("headers element {index} is NULL"))?;
            let (start, end) = reader.take(length, index)?;
            std::str::from_utf8(&bytes[start..end])
                .map_err(|_| format!("headers element {index} is not UTF-8"))?;
            spans.push((start, end));
        }
        Ok(Headers { bytes, spans })
    }
}

/// Not public API: how the relay reads a row's `headers` column (PostgreSQL's
/// binary `text[]`) into the header pairs of the Kafka record it sends, for the
/// fuzz targets in `fuzz/`.
///
/// # Errors
///
/// What [`Headers::parse`] refuses, as text.
#[doc(hidden)]
pub fn record_headers(column: &[u8]) -> Result<Vec<(String, String)>, String> {
    let headers = Headers::parse(column.to_vec())?;
    Ok(headers
        .pairs()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn int(&mut self, what: &str) -> Result<i32, String> {
        let field = self
            .bytes
            .get(self.at..self.at + 4)
            .ok_or_else(|| format!("headers array cut short in its {what}"))?;
        self.at += 4;
        Ok(i32::from_be_bytes([field[0], field[1], field[2], field[3]]))
    }

    fn take(&mut self, length: usize, index: usize) -> Result<(usize, usize), String> {
        let (start, end) = (self.at, self.at + length);
        if end > self.bytes.len() {
            return Err(format!("headers element {index} cut short"));
        }
        self.at = end;
        Ok((start, end))
    }
}

impl FromSql<Array<Text>, Pg> for Headers {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        Ok(Headers::parse(value.as_bytes().to_vec())?)
    }
}

#[cfg(test)]
mod tests {
    use super::Headers;

    fn array(elements: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for n in [1, 0, 25, elements.len() as i32, 1] {
            out.extend_from_slice(&i32::to_be_bytes(n));
        }
        for e in elements {
            out.extend_from_slice(&(e.len() as i32).to_be_bytes());
            out.extend_from_slice(e.as_bytes());
        }
        out
    }

    #[test]
    fn reads_pairs_from_the_binary_array() {
        let headers = Headers::parse(array(&["event", "created", "to", "users"])).unwrap();
        let pairs: Vec<_> = headers.pairs().collect();
        assert_eq!(pairs, [("event", "created"), ("to", "users")]);
        let empty = Headers::parse([0i32, 0, 25].iter().flat_map(|n| n.to_be_bytes()).collect());
        assert_eq!(empty.unwrap().pairs().count(), 0);
    }

    #[test]
    fn malformed_arrays_are_errors_not_panics() {
        let good = array(&["event", "created"]);
        for cut in 0..good.len() {
            assert!(
                Headers::parse(good[..cut].to_vec()).is_err(),
                "cut at {cut}"
            );
        }
        let mut null = array(&["event"]);
        let at = null.len() - 9;
        null[at..at + 4].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(Headers::parse(null).unwrap_err().contains("NULL"));
        let mut bad_utf8 = array(&["é"]);
        let last = bad_utf8.len() - 1;
        bad_utf8[last] = 0xff;
        assert!(Headers::parse(bad_utf8).unwrap_err().contains("UTF-8"));
    }

    /// Found by `fuzz/` (target `relay_row`): a column claiming two billion
    /// elements made the relay allocate for them all (32 GB) and abort.
    #[test]
    fn an_absurd_element_count_is_an_error_not_an_abort() {
        let mut column = array(&["event"]);
        column[12..16].copy_from_slice(&i32::MAX.to_be_bytes());
        let error = Headers::parse(column).unwrap_err();
        assert_eq!(error, "headers array cut short in its element length");
    }
}
