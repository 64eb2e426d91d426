//! libpq connection strings: the one reader of both forms libpq reads, the URL
//! (`postgres://user:pw@host/db?sslmode=..`, percent-encoded values) and
//! `key=value` pairs (`host=db sslmode='verify-full'`).
//!
//! It takes the TLS settings out for tokio-postgres, which knows only
//! `sslmode=disable|prefer|require` and none of the files (what is not a TLS
//! setting is left as written, for tokio-postgres to parse), and finds the
//! secrets [`mask_password`](crate::mask_password) hides.

use std::fmt;
use std::ops::Range;

/// libpq's `sslmode`, with libpq's meanings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SslMode {
    /// Plaintext only.
    Disable,
    /// Plaintext first, TLS if the server refuses plaintext.
    Allow,
    /// TLS if the server offers it, plaintext otherwise (libpq's default).
    Prefer,
    /// TLS, the certificate not checked (unless a root certificate is given).
    Require,
    /// TLS, the certificate chain checked against the root certificate.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    const ALL: [(&'static str, SslMode); 6] = [
        ("disable", SslMode::Disable),
        ("allow", SslMode::Allow),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ];

    fn parse(value: &str) -> Result<Self, SettingError> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, mode)| *mode)
            .ok_or_else(|| SettingError {
                key: "sslmode",
                reason: format!(
                    "unknown value `{value}`: expected one of {}",
                    Self::ALL.map(|(name, _)| name).join(", ")
                ),
            })
    }

    /// Whether the server's certificate chain must be checked.
    pub(crate) fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::ALL
            .iter()
            .find(|(_, mode)| mode == self)
            .map_or("?", |(name, _)| name);
        f.write_str(name)
    }
}

/// The TLS settings of a connection string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TlsSettings {
    /// `sslmode`; `prefer` when absent (`verify-full` with `sslrootcert=system`).
    pub(crate) mode: SslMode,
    /// `sslrootcert`: a PEM file of trusted roots, or `system`.
    pub(crate) root_cert: Option<String>,
    /// `sslcert`: the client certificate (PEM).
    pub(crate) cert: Option<String>,
    /// `sslkey`: the client certificate's key (PEM, PKCS#8).
    pub(crate) key: Option<String>,
}

/// A connection string split into its TLS settings and the rest.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ConnInfo {
    /// The TLS settings.
    pub(crate) tls: TlsSettings,
    /// The connection string without them, in its original form.
    pub(crate) rest: String,
}

/// A TLS setting with a value libpq would refuse too.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid `{key}`: {reason}")]
pub(crate) struct SettingError {
    /// The setting.
    pub(crate) key: &'static str,
    /// What is wrong with it.
    pub(crate) reason: String,
}

/// The TLS settings taken out for tokio-postgres.
const KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// libpq settings tokio-postgres does not know, with the values that ask for
/// what the async connections do anyway (taken out); any other value is refused
/// by name rather than ignored or left to tokio-postgres's "unknown option".
const LIBPQ_ONLY: [(&str, &[&str]); 10] = [
    // tokio-postgres never encrypts with GSSAPI.
    ("gssencmode", &["disable", "prefer"]),
    // native-tls sends SNI for a host name, not for an IP address, as libpq.
    ("sslsni", &["1"]),
    ("sslcompression", &["0"]),
    // A client certificate is sent when the server asks and one is given.
    ("sslcertmode", &["allow"]),
    ("sslpassword", &[]),
    ("sslcrl", &[]),
    ("sslcrldir", &[]),
    ("ssl_min_protocol_version", &[]),
    ("ssl_max_protocol_version", &[]),
    ("sslkeylogfile", &[]),
];

/// The settings whose values are secret.
const SECRET_KEYS: [&str; 2] = ["password", "sslpassword"];

impl ConnInfo {
    /// Splits `url` (URL or `key=value` form); the last of repeated keys wins, as in libpq.
    pub(crate) fn parse(url: &str) -> Result<Self, SettingError> {
        let (pairs, rest) = if is_url(url) {
            split_url(url)
        } else {
            split_key_values(url)?
        };
        let mut mode = None;
        let mut tls = TlsSettings {
            mode: SslMode::Prefer,
            root_cert: None,
            cert: None,
            key: None,
        };
        for (key, value) in pairs {
            match key {
                "sslmode" => mode = Some(SslMode::parse(&value)?),
                "sslrootcert" => tls.root_cert = Some(value),
                "sslcert" => tls.cert = Some(value),
                "sslkey" => tls.key = Some(value),
                _ => check_libpq_only(key, &value)?,
            }
        }
        let system = tls.root_cert.as_deref() == Some("system");
        tls.mode = match mode {
            // libpq 16: the system's roots are only meaningful with the host name checked.
            Some(mode) if system && mode != SslMode::VerifyFull => {
                return Err(SettingError {
                    key: "sslmode",
                    reason: format!(
                        "`{mode}` may not be used with sslrootcert=system (use `verify-full`)"
                    ),
                });
            }
            Some(mode) => mode,
            None if system => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        Ok(ConnInfo { tls, rest })
    }
}

/// A libpq-only setting: fine if its value asks for what is done anyway.
fn check_libpq_only(key: &'static str, value: &str) -> Result<(), SettingError> {
    let accepted = LIBPQ_ONLY
        .iter()
        .find(|(name, _)| *name == key)
        .map_or(&[][..], |(_, accepted)| *accepted);
    if accepted.contains(&value) {
        return Ok(());
    }
    let reason = match accepted {
        [] => "a libpq setting the async connections (tokio-postgres) do not support: \
               remove it from the connection string"
            .to_owned(),
        _ => format!(
            "a libpq setting the async connections (tokio-postgres) support only as \
             {key}={}, what they do anyway",
            accepted.join(" or ")
        ),
    };
    Err(SettingError { key, reason })
}

/// Where the secrets of `text` are (sorted, not overlapping): the password of
/// a URL's authority, and the values of `password` and `sslpassword`, in a
/// URL's query or in `key=value` form, as written (quotes included).
///
/// Any `scheme://` is read as a URL. Where a malformed string could be read two
/// ways, both readings are masked.
pub(crate) fn secret_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let (items, is_url) = match url_parts(text) {
        Some(url) => {
            spans.extend(url.password);
            let items = [url.query, url.first_question_mark]
                .into_iter()
                .flatten()
                .flat_map(|start| query_items(text, start))
                .collect();
            (items, true)
        }
        None => (key_value_items(text), false),
    };
    for item in items {
        if !SECRET_KEYS.contains(&item.key.as_str()) {
            continue;
        }
        match item.value {
            Some(value) => spans.push(value.span),
            // `password secret`: libpq refuses it; the rest may be the secret.
            None if !is_url => spans.push(item.span.end..text.len()),
            None => {}
        }
    }
    spans.retain(|span| !span.is_empty());
    spans.sort_by_key(|span| span.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    merged
}

fn is_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

type Split = (Vec<(&'static str, String)>, String);

/// The TLS (and libpq-only) pairs of the URL's query, and the URL without them.
fn split_url(url: &str) -> Split {
    let Some(query) = url_parts(url).and_then(|parts| parts.query) else {
        return (Vec::new(), url.to_owned());
    };
    let mut pairs = Vec::new();
    let mut kept = Vec::new();
    for item in query_items(url, query) {
        let value = item.value.and_then(|value| value.text).unwrap_or_default();
        match taken_key(&item.key) {
            Some(key) => pairs.push((key, value)),
            None => kept.push(&url[item.span]),
        }
    }
    // `query` is just past the `?`.
    let base = &url[..query - 1];
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (pairs, rest)
}

/// The TLS (and libpq-only) pairs of a `key=value` string, and the string without them.
fn split_key_values(text: &str) -> Result<Split, SettingError> {
    let items = key_value_items(text);
    if items.iter().any(|item| item.value.is_none()) {
        // Not ours to judge: tokio-postgres reports the malformed pair.
        return Ok((Vec::new(), text.to_owned()));
    }
    let mut pairs = Vec::new();
    let mut kept = Vec::new();
    for item in items {
        let key = taken_key(&item.key);
        let value = item
            .value
            .and_then(|value| value.text)
            .ok_or_else(|| SettingError {
                key: key.unwrap_or("connection string"),
                reason: "unterminated quoted value".to_owned(),
            })?;
        match key {
            Some(key) => pairs.push((key, value)),
            None => kept.push(&text[item.span]),
        }
    }
    Ok((pairs, kept.join(" ")))
}

fn taken_key(key: &str) -> Option<&'static str> {
    KEYS.into_iter()
        .chain(LIBPQ_ONLY.map(|(name, _)| name))
        .find(|ours| *ours == key)
}

/// One `key=value` of a connection string, where it was written.
#[derive(Debug)]
struct Item {
    /// The key, percent-decoded in a URL.
    key: String,
    /// The whole item as written; for a key without `=`, the key.
    span: Range<usize>,
    /// `None` when no `=` follows the key.
    value: Option<Value>,
}

#[derive(Debug)]
struct Value {
    /// Unquoted and unescaped (`key=value` form) or percent-decoded (URL);
    /// `None` for an unterminated quote.
    text: Option<String>,
    /// The value as written, quotes included.
    span: Range<usize>,
}

/// Where the parts of a URL (`scheme://[user[:password]@]host/db?query`) are.
#[derive(Debug)]
struct UrlParts {
    /// The password of the authority.
    password: Option<Range<usize>>,
    /// Just past the `?` that starts the query, after the credentials.
    query: Option<usize>,
    /// Just past the first `?` after the scheme (the same unless a password holds one).
    first_question_mark: Option<usize>,
}

/// The parts of `text` if it starts with `scheme://`.
///
/// The credentials end at the last `@` before the first `/`: libpq takes the
/// first `@`, but a password with a raw `@` (which libpq then misreads) must be
/// masked whole.
fn url_parts(text: &str) -> Option<UrlParts> {
    let scheme_end = text.find("://")?;
    // Leading spaces: not a URL to libpq, but still one to mask as such.
    let scheme = text[..scheme_end].trim_start();
    let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid {
        return None;
    }
    let after = scheme_end + 3;
    let authority_end = text[after..].find('/').map_or(text.len(), |i| after + i);
    let at = text[after..authority_end].rfind('@').map(|i| after + i);
    let password = at.and_then(|at| {
        let colon = after + text[after..at].find(':')?;
        Some(colon + 1..at)
    });
    let question_mark = |from: usize| text[from..].find('?').map(|i| from + i + 1);
    Some(UrlParts {
        password,
        query: question_mark(at.map_or(after, |at| at + 1)),
        first_question_mark: question_mark(after),
    })
}

/// The `&`-separated items of a URL's query starting at `start`.
fn query_items(text: &str, start: usize) -> Vec<Item> {
    let mut items = Vec::new();
    let mut from = start;
    while from <= text.len() {
        let end = text[from..].find('&').map_or(text.len(), |i| from + i);
        let part = &text[from..end];
        if !part.is_empty() {
            let item = match part.find('=') {
                Some(eq) => Item {
                    key: percent_decode(&part[..eq]),
                    span: from..end,
                    value: Some(Value {
                        text: Some(percent_decode(&part[eq + 1..])),
                        span: from + eq + 1..end,
                    }),
                },
                None => Item {
                    key: percent_decode(part),
                    span: from..end,
                    value: None,
                },
            };
            items.push(item);
        }
        from = end + 1;
    }
    items
}

/// The items of a `key=value` string, as libpq reads them: spaces around `=`
/// allowed, a value `'quoted'` or up to whitespace, `\` escaping the next
/// character. A key without `=` is an item without a value, and reading goes on.
fn key_value_items(text: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut chars = text.char_indices().peekable();
    let position = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| -> usize {
        chars.peek().map_or(text.len(), |(i, _)| *i)
    };
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        while chars
            .next_if(|(_, c)| !c.is_whitespace() && *c != '=')
            .is_some()
        {}
        let key_end = position(&mut chars);
        let key = text[start..key_end].to_owned();
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            items.push(Item {
                key,
                span: start..key_end,
                value: None,
            });
            continue;
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let value_start = position(&mut chars);
        let value = read_value(&mut chars);
        let end = position(&mut chars);
        items.push(Item {
            key,
            span: start..end,
            value: Some(Value {
                text: value,
                span: value_start..end,
            }),
        });
    }
    items
}

/// A value as libpq reads it: `'quoted'` or up to whitespace, `\` escaping the
/// next character; `None` for an unterminated quote (the rest of the text read).
fn read_value(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>) -> Option<String> {
    let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
    let mut value = String::new();
    loop {
        match chars.peek().map(|(_, c)| *c) {
            None if quoted => return None,
            None => return Some(value),
            Some('\'') if quoted => {
                chars.next();
                return Some(value);
            }
            Some(c) if c.is_whitespace() && !quoted => return Some(value),
            Some('\\') => {
                chars.next();
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            Some(c) => {
                chars.next();
                value.push(c);
            }
        }
    }
}

/// `%XX` sequences decoded; a malformed one is kept as written, as libpq's
/// tolerant parser and tokio-postgres do with the rest of the URL.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        });
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> ConnInfo {
        ConnInfo::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn url_form_takes_out_the_tls_settings_and_keeps_the_rest() {
        let info = parse(
            "postgres://app:pw@db:5432/app?sslmode=verify-full&connect_timeout=5\
             &sslrootcert=%2Fetc%2Fca%20certs%2Fca.pem&sslcert=c.pem&sslkey=k.pem",
        );
        assert_eq!(
            info.tls,
            TlsSettings {
                mode: SslMode::VerifyFull,
                root_cert: Some("/etc/ca certs/ca.pem".to_owned()),
                cert: Some("c.pem".to_owned()),
                key: Some("k.pem".to_owned()),
            }
        );
        assert_eq!(info.rest, "postgres://app:pw@db:5432/app?connect_timeout=5");
    }

    #[test]
    fn url_form_without_query_or_tls_settings_is_unchanged() {
        for url in [
            "postgres://db/app",
            "postgresql://db/app?options=-c%20search_path%3Ds1",
        ] {
            let info = parse(url);
            assert_eq!(info.rest, url);
            assert_eq!(info.tls.mode, SslMode::Prefer);
            assert_eq!(info.tls.root_cert, None);
        }
        assert_eq!(
            parse("postgres://db/app?sslmode=disable").rest,
            "postgres://db/app"
        );
    }

    #[test]
    fn key_value_form_takes_out_the_tls_settings_and_keeps_the_rest() {
        let info = parse(
            "host=db  sslmode = 'verify-ca' user=app sslrootcert='/etc/my ca.pem' \
             password='it\\'s' sslkey=k\\ 1.pem",
        );
        assert_eq!(info.tls.mode, SslMode::VerifyCa);
        assert_eq!(info.tls.root_cert.as_deref(), Some("/etc/my ca.pem"));
        assert_eq!(info.tls.key.as_deref(), Some("k 1.pem"));
        assert_eq!(info.rest, "host=db user=app password='it\\'s'");
    }

    #[test]
    fn every_libpq_mode_is_known_and_prefer_is_the_default() {
        for (name, mode) in SslMode::ALL {
            assert_eq!(parse(&format!("host=db sslmode={name}")).tls.mode, mode);
            assert_eq!(mode.to_string(), name);
        }
        assert_eq!(parse("host=db").tls.mode, SslMode::Prefer);
        assert_eq!(
            parse("postgres://db/app?sslmode=require&sslmode=disable")
                .tls
                .mode,
            SslMode::Disable
        );
    }

    #[test]
    fn an_unknown_mode_is_named_with_the_allowed_ones() {
        let error = ConnInfo::parse("postgres://db/app?sslmode=verify").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid `sslmode`: unknown value `verify`: expected one of disable, allow, \
             prefer, require, verify-ca, verify-full"
        );
    }

    #[test]
    fn system_roots_mean_verify_full() {
        assert_eq!(
            parse("postgres://db/app?sslrootcert=system").tls.mode,
            SslMode::VerifyFull
        );
        let error = ConnInfo::parse("sslrootcert=system sslmode=require").unwrap_err();
        assert_eq!(error.key, "sslmode");
        assert!(error.reason.contains("verify-full"), "{error}");
    }

    #[test]
    fn an_unterminated_quote_is_refused() {
        let error = ConnInfo::parse("host=db sslrootcert='/etc/ca.pem").unwrap_err();
        assert_eq!(error.key, "sslrootcert");
    }

    #[test]
    fn libpq_only_settings_are_refused_by_name_unless_they_ask_for_what_is_done() {
        for key in [
            "sslpassword",
            "sslcrl",
            "sslcrldir",
            "ssl_min_protocol_version",
        ] {
            let error = ConnInfo::parse(&format!("host=db {key}=x")).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "invalid `{key}`: a libpq setting the async connections (tokio-postgres) \
                     do not support: remove it from the connection string"
                )
            );
        }
        let error = ConnInfo::parse("postgres://db/app?gssencmode=require").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid `gssencmode`: a libpq setting the async connections (tokio-postgres) \
             support only as gssencmode=disable or prefer, what they do anyway"
        );
        for (key, value) in [
            ("sslsni", "0"),
            ("sslcompression", "1"),
            ("sslcertmode", "require"),
        ] {
            let error = ConnInfo::parse(&format!("host=db {key}={value}")).unwrap_err();
            assert_eq!(error.key, key);
        }
        let info = parse(
            "postgres://db/app?gssencmode=disable&sslsni=1&sslcompression=0&sslcertmode=allow\
             &application_name=a",
        );
        assert_eq!(info.rest, "postgres://db/app?application_name=a");
        assert_eq!(parse("host=db gssencmode=prefer").rest, "host=db");
    }

    #[test]
    fn a_question_mark_in_the_password_does_not_start_the_query() {
        let info = parse("postgres://u:p?x@db/app?sslmode=require&connect_timeout=5");
        assert_eq!(info.tls.mode, SslMode::Require);
        assert_eq!(info.rest, "postgres://u:p?x@db/app?connect_timeout=5");
    }

    #[test]
    fn secrets_are_found_where_they_were_written() {
        let text = "host=db password = 'a b' sslpassword=c";
        let spans: Vec<&str> = secret_spans(text).into_iter().map(|s| &text[s]).collect();
        assert_eq!(spans, ["'a b'", "c"]);
        let text = "postgres://u:pw@db/app?sslmode=require&password=x";
        let spans: Vec<&str> = secret_spans(text).into_iter().map(|s| &text[s]).collect();
        assert_eq!(spans, ["pw", "x"]);
    }

    #[test]
    fn malformed_percent_escapes_are_kept() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a%zz%41"), "a%zzA");
    }
}
