//! Reading a record's headers without trusting their names.
//!
//! rdkafka hands header names out as `&str` and panics (`to_str().unwrap()`)
//! on a name that is not UTF-8, which any producer can write. The consumer
//! reads headers from the network, so it reads them here: a name that is not
//! UTF-8 becomes a [`DecodeError::HeaderNameNotUtf8`] instead of a panic.
//!
//! The workspace forbids `unsafe`, so the name's bytes cannot be read through
//! librdkafka's C API; rdkafka's panic is caught instead. Its panic message
//! still reaches the panic hook (stderr by default), and a program built with
//! `panic = "abort"` aborts on such a record. Header names are read by
//! librdkafka as C strings: a name holding a NUL reads up to its first NUL.

use std::panic::{AssertUnwindSafe, catch_unwind};

use rdkafka::message::{Header, Headers};

use crate::error::DecodeError;

/// The header at `index` of `headers`; `None` past the last one.
///
/// # Errors
///
/// [`DecodeError::HeaderNameNotUtf8`] when the header's name is not UTF-8.
///
/// # Examples
///
/// ```
/// use rdkafka::message::{Header, OwnedHeaders};
///
/// let headers = OwnedHeaders::new().insert(Header { key: "to", value: Some("users") });
/// let header = outbox::kafka::header_at(&headers, 0).unwrap()?;
/// assert_eq!((header.key, header.value), ("to", Some(&b"users"[..])));
/// assert!(outbox::kafka::header_at(&headers, 1).is_none());
/// # Ok::<(), outbox::DecodeError>(())
/// ```
pub fn header_at<H: Headers + ?Sized>(
    headers: &H,
    index: usize,
) -> Option<Result<Header<'_, &[u8]>, DecodeError>> {
    if index >= headers.count() {
        return None;
    }
    // Reading is all the closure does: a panic leaves nothing half done.
    match catch_unwind(AssertUnwindSafe(|| headers.try_get(index))) {
        Ok(header) => header.map(Ok),
        Err(_) => Some(Err(DecodeError::HeaderNameNotUtf8 { index })),
    }
}

/// Every header of `headers`, in order, each as [`header_at`] reads it.
///
/// # Examples
///
/// ```
/// use rdkafka::message::{Header, OwnedHeaders};
///
/// let headers = OwnedHeaders::new()
///     .insert(Header { key: "to", value: Some("users") })
///     .insert(Header::<&str> { key: "trace", value: None });
/// let names: Vec<&str> = outbox::kafka::read_headers(&headers)
///     .map(|header| header.map(|h| h.key))
///     .collect::<Result<_, _>>()?;
/// assert_eq!(names, ["to", "trace"]);
/// # Ok::<(), outbox::DecodeError>(())
/// ```
pub fn read_headers<H: Headers + ?Sized>(
    headers: &H,
) -> impl Iterator<Item = Result<Header<'_, &[u8]>, DecodeError>> + '_ {
    (0..headers.count()).map_while(|index| header_at(headers, index))
}
