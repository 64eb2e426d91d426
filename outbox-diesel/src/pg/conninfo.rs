//! libpq's TLS settings taken out of a connection string, for tokio-postgres,
//! which knows only `sslmode=disable|prefer|require` and none of the files.
//!
//! Both forms libpq reads are handled: the URL (`postgres://host/db?sslmode=..`,
//! percent-encoded values) and `key=value` pairs (`host=db sslmode='verify-full'`).
//! What is not a TLS setting is left as written, for tokio-postgres to parse.

use std::fmt;

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

const KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl ConnInfo {
    /// Splits `url` (URL or `key=value` form); the last of repeated keys wins, as in libpq.
    pub(crate) fn parse(url: &str) -> Result<Self, SettingError> {
        let (pairs, rest) = if is_url(url) {
            split_url(url)?
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
                _ => tls.key = Some(value),
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

fn is_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

type Split = (Vec<(&'static str, String)>, String);

/// The TLS pairs of the URL's query, and the URL without them.
fn split_url(url: &str) -> Result<Split, SettingError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((Vec::new(), url.to_owned()));
    };
    let mut pairs = Vec::new();
    let mut kept = Vec::new();
    for part in query.split('&') {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        match our_key(&percent_decode(key)) {
            Some(key) => {
                let value = percent_decode(value);
                pairs.push((key, value));
            }
            None => kept.push(part),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((pairs, rest))
}

/// The TLS pairs of a `key=value` string, and the string without them.
fn split_key_values(text: &str) -> Result<Split, SettingError> {
    let mut pairs = Vec::new();
    let mut kept = Vec::new();
    let mut chars = text.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut key_end = text.len();
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() || c == '=' {
                key_end = i;
                break;
            }
            chars.next();
        }
        let key = &text[start..key_end];
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            // Not ours to judge: tokio-postgres reports the malformed pair.
            return Ok((Vec::new(), text.to_owned()));
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let value = read_value(&mut chars).ok_or_else(|| SettingError {
            key: our_key(key).unwrap_or("connection string"),
            reason: "unterminated quoted value".to_owned(),
        })?;
        let end = chars.peek().map_or(text.len(), |(i, _)| *i);
        match our_key(key) {
            Some(key) => pairs.push((key, value)),
            None => kept.push(&text[start..end]),
        }
    }
    Ok((pairs, kept.join(" ")))
}

/// A value as libpq reads it: `'quoted'` or up to whitespace, `\` escaping the next character.
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

fn our_key(key: &str) -> Option<&'static str> {
    KEYS.into_iter().find(|ours| *ours == key)
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
    fn malformed_percent_escapes_are_kept() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a%zz%41"), "a%zzA");
    }
}
