//! Unique names for schemas, topics and groups.

/// `prefix_testname_random`, lowercase `[a-z0-9_]`, at most 63 bytes (PostgreSQL's limit).
pub(crate) fn unique(prefix: &str, test_name: &str) -> String {
    let cleaned: String = test_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    // The last 12 hex digits of a UUIDv7 are random.
    let random = uuid::Uuid::now_v7().simple().to_string();
    format!("{prefix}_{cleaned}_{}", &random[20..])
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_unique_and_short() {
        let a = super::unique("t", &"Some::Test-Name".repeat(10));
        let b = super::unique("t", &"Some::Test-Name".repeat(10));
        assert_ne!(a, b);
        assert!(a.len() <= 63, "{a}");
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        );
    }
}
