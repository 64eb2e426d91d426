//! PostgreSQL's binary `text[]` format, as the server sends the relay a row's
//! `headers` column (`array_send`).

/// The column for `elements`: a one-dimensional array, or the zero-dimension
/// form PostgreSQL sends for an empty one.
pub fn text_array<S: AsRef<str>>(elements: &[S]) -> Vec<u8> {
    const TEXT_OID: i32 = 25;
    let mut out = Vec::new();
    let int = |out: &mut Vec<u8>, n: i32| out.extend_from_slice(&n.to_be_bytes());
    if elements.is_empty() {
        for n in [0, 0, TEXT_OID] {
            int(&mut out, n);
        }
        return out;
    }
    let len = i32::try_from(elements.len()).expect("a small array");
    for n in [1, 0, TEXT_OID, len, 1] {
        int(&mut out, n);
    }
    for element in elements {
        let bytes = element.as_ref().as_bytes();
        int(
            &mut out,
            i32::try_from(bytes.len()).expect("a small element"),
        );
        out.extend_from_slice(bytes);
    }
    out
}

/// The column enqueue writes for a record's headers: name, value, name, value, …
pub fn headers_column<N: AsRef<str>, V: AsRef<str>>(headers: &[(N, V)]) -> Vec<u8> {
    let flat: Vec<&str> = headers
        .iter()
        .flat_map(|(name, value)| [name.as_ref(), value.as_ref()])
        .collect();
    text_array(&flat)
}
