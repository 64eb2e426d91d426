//! The registry's URL, read once: where to connect, what the requests'
//! paths start with, and the credentials it may carry.

use hyper::Uri;

/// Where the requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    pub(super) tls: bool,
    /// The host to connect to and to verify the certificate of, without an
    /// IPv6 address's brackets.
    pub(super) host: String,
    pub(super) port: u16,
    /// `host[:port]` as the URL writes it, without credentials: the `Host` header.
    pub(super) authority: String,
    /// The URL's path without a final `/` (`/apis/ccompat/v7`, or empty).
    pub(super) base_path: String,
}

impl Endpoint {
    /// The URL without credentials, for messages.
    pub(super) fn display(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.base_path)
    }
}

/// A URL's user and password, percent-decoded.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct UserInfo {
    pub(super) user: String,
    pub(super) password: String,
}

impl std::fmt::Debug for UserInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:***", self.user)
    }
}

/// Reads `url` (`http[s]://[user:password@]host[:port][/base/path]`).
///
/// The error says what is wrong; it names the URL with its password masked.
pub(super) fn parse(url: &str) -> Result<(Endpoint, Option<UserInfo>), String> {
    let shown = crate::mask_password(url.trim());
    let uri: Uri = url
        .trim()
        .parse()
        .map_err(|e| format!("`{shown}` is not a URL ({e}); expected http:// or https://"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(format!("`{shown}` does not start with http:// or https://"));
        }
    };
    let Some(authority) = uri.authority() else {
        return Err(format!("`{shown}` names no host"));
    };
    if uri.query().is_some() {
        // Request paths are appended to the URL's path: a query would end up
        // in the middle of them.
        return Err(format!(
            "`{shown}` has a query (`?...`); give the base URL of the API only"
        ));
    }
    let (user_info, host_port) = match authority.as_str().rsplit_once('@') {
        Some((user_info, host_port)) => (Some(user_info), host_port),
        None => (None, authority.as_str()),
    };
    let host = authority.host();
    if host.is_empty() {
        return Err(format!("`{shown}` names no host"));
    }
    // `http::Uri` takes any text after the host's `:` and then has no port.
    let written_port = host_port
        .rfind(':')
        .filter(|colon| !host_port[*colon..].contains(']'))
        .map(|colon| &host_port[colon + 1..]);
    let port = match (written_port, authority.port_u16()) {
        (_, Some(port)) => port,
        (None, None) | (Some(""), None) => {
            if tls {
                443
            } else {
                80
            }
        }
        (Some(_), None) => return Err(format!("`{shown}` has a port that is not a number")),
    };
    let user_info = user_info.map(|text| {
        let (user, password) = text.split_once(':').unwrap_or((text, ""));
        UserInfo {
            user: percent_decode(user),
            password: percent_decode(password),
        }
    });
    let endpoint = Endpoint {
        tls,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
        authority: host_port.to_owned(),
        base_path: uri.path().trim_end_matches('/').to_owned(),
    };
    Ok((endpoint, user_info))
}

/// `%XX` escapes decoded; a malformed escape, or bytes that are not UTF-8,
/// kept as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            // Two hex digits: at most 255.
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::{Endpoint, parse, percent_decode};

    #[test]
    fn the_base_path_host_and_port_are_read() {
        let (endpoint, user_info) = parse("http://127.0.0.1:58086/apis/ccompat/v7/").unwrap();
        assert_eq!(
            endpoint,
            Endpoint {
                tls: false,
                host: "127.0.0.1".into(),
                port: 58086,
                authority: "127.0.0.1:58086".into(),
                base_path: "/apis/ccompat/v7".into(),
            }
        );
        assert!(user_info.is_none());
        assert_eq!(endpoint.display(), "http://127.0.0.1:58086/apis/ccompat/v7");

        let (endpoint, _) = parse("https://registry.example").unwrap();
        assert_eq!((endpoint.tls, endpoint.port), (true, 443));
        assert_eq!(endpoint.base_path, "");
        assert_eq!(endpoint.display(), "https://registry.example");

        let (endpoint, _) = parse("http://[::1]:8081").unwrap();
        assert_eq!((endpoint.host.as_str(), endpoint.port), ("::1", 8081));
        assert_eq!(endpoint.authority, "[::1]:8081");
    }

    #[test]
    fn credentials_are_taken_out_and_decoded() {
        let (endpoint, user_info) = parse("https://app:p%40ss%3Aword@registry:8081/base").unwrap();
        let user_info = user_info.unwrap();
        assert_eq!(user_info.user, "app");
        assert_eq!(user_info.password, "p@ss:word");
        assert_eq!(endpoint.authority, "registry:8081");
        assert_eq!(endpoint.display(), "https://registry:8081/base");
    }

    #[test]
    fn bad_urls_are_named_with_the_password_masked() {
        for (url, says) in [
            ("registry:8081", "does not start with http:// or https://"),
            ("ftp://registry", "does not start with http:// or https://"),
            ("not a url", "is not a URL"),
            ("http://registry/base?x=1", "has a query"),
            (
                "http://app:hunter2@registry:port",
                "port that is not a number",
            ),
        ] {
            let error = parse(url).unwrap_err();
            assert!(error.contains(says), "{url}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn percent_escapes_are_decoded_and_bad_ones_kept() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(percent_decode("%FF"), "%FF");
    }
}
