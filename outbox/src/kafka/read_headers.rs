//! Reading a record's headers as librdkafka holds them: names and values as
//! bytes.
//!
//! rdkafka hands header names out as `&str` and panics (`to_str().unwrap()`)
//! on a name that is not UTF-8, which any producer can write. The consumer
//! reads headers from the network, so it reads them here, through librdkafka's
//! C API (`rd_kafka_header_get_all`): a name that is not UTF-8 is data, which
//! [`RawHeader::utf8`] turns into a [`DecodeError::HeaderNameNotUtf8`] naming
//! it. Nothing panics, so nothing depends on the panic strategy.
//!
//! librdkafka hands names out as C strings: a name holding a NUL reads up to
//! its first NUL.
//!
//! [`raw_header_at`] is the workspace's one `unsafe` function.

use std::ffi::CStr;
use std::ptr;

use rdkafka::error::IsError as _;
use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};
use rdkafka_sys::{RDKafkaHeaders, rd_kafka_header_get_all};

use crate::error::{DecodeError, Truncated};

/// A header as librdkafka holds it: its name and value as bytes.
///
/// # Examples
///
/// ```
/// use rdkafka::message::{Header, OwnedHeaders};
///
/// let headers = OwnedHeaders::new().insert(Header { key: "to", value: Some("users") });
/// let header = outbox::kafka::header_at(&headers, 0).expect("a header");
/// assert_eq!((header.name, header.value), (&b"to"[..], Some(&b"users"[..])));
/// assert_eq!(header.utf8()?.key, "to");
/// # Ok::<(), outbox::DecodeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader<'a> {
    /// Its position among the record's headers, counting from 0.
    pub index: usize,
    /// Its name, up to its first NUL.
    pub name: &'a [u8],
    /// Its value; `None` for a null header.
    pub value: Option<&'a [u8]>,
}

impl<'a> RawHeader<'a> {
    /// The header with its name as text, as rdkafka's [`Header`] (which can be
    /// inserted into [`OwnedHeaders`]).
    ///
    /// # Errors
    ///
    /// [`DecodeError::HeaderNameNotUtf8`] naming the header (its index, and
    /// its name lossily decoded) when the name is not UTF-8.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::{DecodeError, kafka::RawHeader};
    ///
    /// let header = RawHeader { index: 7, name: b"x-\xff", value: None };
    /// let error = header.utf8().unwrap_err();
    /// assert!(matches!(error, DecodeError::HeaderNameNotUtf8 { index: 7, .. }));
    /// assert_eq!(
    ///     error.to_string(),
    ///     "header name \"x-\u{fffd}\" is not valid UTF-8 (header 7, counting from 0)"
    /// );
    /// ```
    pub fn utf8(&self) -> Result<Header<'a, &'a [u8]>, DecodeError> {
        match std::str::from_utf8(self.name) {
            Ok(key) => Ok(Header {
                key,
                value: self.value,
            }),
            Err(_) => Err(DecodeError::HeaderNameNotUtf8 {
                index: self.index,
                name: Truncated::lossy(self.name),
            }),
        }
    }
}

/// Headers librdkafka holds: rdkafka's [`BorrowedHeaders`] (a consumed
/// record's) and [`OwnedHeaders`] (a detached record's, or built). Sealed.
pub trait NativeHeaders: Headers + sealed::Sealed {
    /// These headers as rdkafka's read-only view of librdkafka's.
    fn borrowed(&self) -> &BorrowedHeaders;
}

impl NativeHeaders for BorrowedHeaders {
    fn borrowed(&self) -> &BorrowedHeaders {
        self
    }
}

impl NativeHeaders for OwnedHeaders {
    fn borrowed(&self) -> &BorrowedHeaders {
        self.as_borrowed()
    }
}

mod sealed {
    /// Only rdkafka's headers: [`super::raw_header_at`] reads them as
    /// librdkafka's.
    pub trait Sealed {}
    impl Sealed for rdkafka::message::BorrowedHeaders {}
    impl Sealed for rdkafka::message::OwnedHeaders {}
}

/// The header at `index` of `headers`, name and value as bytes; `None` past
/// the last one.
///
/// # Examples
///
/// ```
/// use rdkafka::message::{Header, OwnedHeaders};
///
/// let headers = OwnedHeaders::new().insert(Header { key: "to", value: Some("users") });
/// let header = outbox::kafka::header_at(&headers, 0).expect("a header");
/// assert_eq!((header.name, header.value), (&b"to"[..], Some(&b"users"[..])));
/// assert!(outbox::kafka::header_at(&headers, 1).is_none());
/// ```
pub fn header_at<H: NativeHeaders + ?Sized>(headers: &H, index: usize) -> Option<RawHeader<'_>> {
    raw_header_at(headers.borrowed(), index)
}

/// Every header of `headers`, in order, name and value as bytes.
///
/// # Examples
///
/// ```
/// use rdkafka::message::{Header, OwnedHeaders};
///
/// let headers = OwnedHeaders::new()
///     .insert(Header { key: "to", value: Some("users") })
///     .insert(Header::<&str> { key: "trace", value: None });
/// let names: Vec<&[u8]> = outbox::kafka::read_headers(&headers).map(|h| h.name).collect();
/// assert_eq!(names, [&b"to"[..], b"trace"]);
/// ```
pub fn read_headers<H: NativeHeaders + ?Sized>(
    headers: &H,
) -> impl Iterator<Item = RawHeader<'_>> + '_ {
    let headers = headers.borrowed();
    (0..headers.count()).map_while(move |index| raw_header_at(headers, index))
}

/// The header at `index` of `headers`, read through librdkafka's C API.
#[allow(unsafe_code)]
fn raw_header_at(headers: &BorrowedHeaders, index: usize) -> Option<RawHeader<'_>> {
    // librdkafka indexes its list with an `int` and checks only the upper
    // bound: an index past `i32::MAX` would read out of bounds.
    if index >= headers.count() {
        return None;
    }
    // rdkafka 0.39 makes every `&BorrowedHeaders` from a native headers
    // pointer (`BorrowedMessage::headers`, `OwnedHeaders::as_borrowed`), and
    // its own `Headers` implementation casts it back this way.
    let native = ptr::from_ref(headers).cast::<RDKafkaHeaders>();
    let (mut name, mut value, mut size) = (ptr::null(), ptr::null(), 0);
    // SAFETY: `native` is a live `rd_kafka_headers_t` for the lifetime of
    // `headers` (see above; the same call rdkafka's `try_get` makes), which
    // librdkafka only reads here; the out-pointers are valid locals; `index`
    // is below the count.
    let err = unsafe { rd_kafka_header_get_all(native, index, &mut name, &mut value, &mut size) };
    if err.is_error() || name.is_null() {
        return None;
    }
    // SAFETY: librdkafka stores every header name NUL-terminated
    // (`rd_kafka_header_add`) in the header's allocation, which lives and is
    // left unchanged as long as `headers` is borrowed: the returned slice's
    // lifetime is that borrow's.
    let name = unsafe { CStr::from_ptr(name) }.to_bytes();
    let value = (!value.is_null()).then(|| {
        // SAFETY: a non-null value is `size` bytes in the same allocation as
        // the name, with the same lifetime.
        unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }
    });
    Some(RawHeader { index, name, value })
}

#[cfg(test)]
mod tests {
    use rdkafka::message::{Header, OwnedHeaders};

    use super::*;

    #[test]
    fn names_and_values_are_read_as_bytes() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "to",
                value: Some(&b"us\xffers"[..]),
            })
            .insert(Header::<&[u8]> {
                key: "null",
                value: None,
            })
            .insert(Header {
                key: "empty",
                value: Some(""),
            });
        let read: Vec<RawHeader<'_>> = read_headers(&headers).collect();
        assert_eq!(
            read,
            [
                RawHeader {
                    index: 0,
                    name: b"to",
                    value: Some(b"us\xffers")
                },
                RawHeader {
                    index: 1,
                    name: b"null",
                    value: None
                },
                RawHeader {
                    index: 2,
                    name: b"empty",
                    value: Some(b"")
                },
            ]
        );
        assert_eq!(
            read_headers(headers.as_borrowed()).collect::<Vec<_>>(),
            read
        );
    }

    #[test]
    fn an_index_past_the_end_reads_nothing() {
        let headers = OwnedHeaders::new().insert(Header {
            key: "to",
            value: Some("users"),
        });
        assert!(header_at(&headers, 1).is_none());
        // librdkafka would cast this to a negative `int`.
        assert!(header_at(&headers, 1 << 31).is_none());
        assert!(header_at(&headers, usize::MAX).is_none());
        assert_eq!(read_headers(&OwnedHeaders::new()).count(), 0);
    }

    #[test]
    fn a_name_that_is_not_utf8_is_a_typed_error_naming_it() {
        let header = RawHeader {
            index: 3,
            name: b"x-\xff\xfe",
            value: Some(b"v"),
        };
        let error = header.utf8().unwrap_err();
        assert_eq!(
            error.to_string(),
            "header name \"x-\u{fffd}\u{fffd}\" is not valid UTF-8 (header 3, counting from 0)"
        );
        let good = RawHeader {
            name: b"to",
            ..header
        };
        let header = good.utf8().expect("UTF-8");
        assert_eq!((header.key, header.value), ("to", Some(&b"v"[..])));
    }
}
