//! Why a Kafka client cannot use its brokers, read from what librdkafka says.

use std::fmt;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// Why the brokers could not be used, from the most to the least specific
/// thing librdkafka reported; see [`ConnectError`](super::ConnectError).
///
/// # Examples
///
/// ```
/// use outbox::kafka::Cause;
///
/// let cause = Cause::of_reason("127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused");
/// assert_eq!(cause, Some(Cause::ConnectionRefused));
/// assert_eq!(Cause::of_reason("Failed to resolve 'nohost:9092': Name or service not known"), Some(Cause::UnknownHost));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// The brokers refused the login: user, password or SASL mechanism.
    Authentication,
    /// The broker's certificate is not signed by a CA the client trusts.
    UntrustedCertificate,
    /// The TLS handshake failed for another reason (e.g. the broker wants a
    /// client certificate).
    Tls,
    /// The client speaks TLS to a listener that does not (`SSL`/`SASL_SSL`
    /// against a `PLAINTEXT` port).
    NotTls,
    /// The client speaks plaintext to a TLS listener.
    ExpectsTls,
    /// A broker's host name does not resolve.
    UnknownHost,
    /// Nothing listens on a broker's port.
    ConnectionRefused,
    /// The client stopped on an error it cannot recover from.
    Fatal,
    /// librdkafka refused the settings.
    Settings,
    /// No broker answered in time, and librdkafka said nothing more specific.
    NoAnswer,
}

impl Cause {
    /// The cause that `reason`, the text of a librdkafka error or log line,
    /// reports; `None` when it reports none of them.
    pub fn of_reason(reason: &str) -> Option<Cause> {
        let has = |text: &str| reason.contains(text);
        Some(
            if has("SASL") && (has("uthentication") || has("Authentication")) {
                Cause::Authentication
            } else if has("certificate verify failed") || has("certificate could not be verified") {
                Cause::UntrustedCertificate
            } else if has("connecting to a PLAINTEXT broker listener") {
                Cause::NotTls
            } else if has("connecting to a SSL listener") {
                Cause::ExpectsTls
            } else if has("SSL handshake failed") {
                Cause::Tls
            } else if has("Failed to resolve") {
                Cause::UnknownHost
            } else if has("Connection refused") {
                Cause::ConnectionRefused
            } else {
                return None;
            },
        )
    }

    /// The cause an error code of librdkafka reports, when the text said
    /// nothing more precise.
    pub(crate) fn of_code(code: RDKafkaErrorCode) -> Option<Cause> {
        use RDKafkaErrorCode as Code;
        Some(match code {
            Code::Authentication | Code::SaslAuthenticationFailed => Cause::Authentication,
            Code::SSL => Cause::Tls,
            Code::Resolve => Cause::UnknownHost,
            _ => return None,
        })
    }

    /// The cause of a librdkafka error with its `reason`.
    pub(crate) fn of(error: &KafkaError, reason: &str) -> Option<Cause> {
        Cause::of_reason(reason).or_else(|| error.rdkafka_error_code().and_then(Cause::of_code))
    }

    /// How specific the cause is: the check reports the most specific one seen.
    pub(crate) fn rank(self) -> u8 {
        match self {
            Cause::Authentication => 9,
            Cause::UntrustedCertificate => 8,
            Cause::Tls => 7,
            Cause::NotTls | Cause::ExpectsTls => 6,
            Cause::Fatal => 5,
            Cause::Settings => 4,
            Cause::UnknownHost => 3,
            Cause::ConnectionRefused => 2,
            Cause::NoAnswer => 0,
        }
    }

    /// Whether waiting longer cannot help: the brokers answered, and said no.
    pub(crate) fn is_decisive(self) -> bool {
        self.rank() >= Cause::Fatal.rank()
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cause::Authentication => {
                "authentication failed (check `sasl.mechanism`, `sasl.username` and `sasl.password`)"
            }
            Cause::UntrustedCertificate => {
                "the broker's certificate is not trusted (set `ssl.ca.location` to the CA that signed it)"
            }
            Cause::Tls => "the TLS handshake failed",
            Cause::NotTls => {
                "the listener does not speak TLS (`security.protocol` is SSL or SASL_SSL: is this the PLAINTEXT port?)"
            }
            Cause::ExpectsTls => {
                "the listener expects TLS (set `security.protocol` to SSL or SASL_SSL, or use the PLAINTEXT port)"
            }
            Cause::UnknownHost => "unknown host (check the host names of the brokers)",
            Cause::ConnectionRefused => "connection refused (is a broker listening on that port?)",
            Cause::Fatal => "the client stopped on a fatal error",
            Cause::Settings => "the settings were refused",
            Cause::NoAnswer => "no broker answered",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What librdkafka 2.12 says in each case, as seen against the test bench.
    #[test]
    fn each_reason_has_its_cause() {
        let cases = [
            (
                "127.0.0.1:59094/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
                Cause::Authentication,
            ),
            (
                "127.0.0.1:59094/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (install ca-certificates package)",
                Cause::UntrustedCertificate,
            ),
            (
                "127.0.0.1:59094/bootstrap: Disconnected while requesting ApiVersion: might be caused by incorrect security.protocol configuration (connecting to a SSL listener?) or broker version is < 0.10 (see api.version.request)",
                Cause::ExpectsTls,
            ),
            (
                "127.0.0.1:59092/bootstrap: SSL handshake failed: Disconnected: connecting to a PLAINTEXT broker listener?",
                Cause::NotTls,
            ),
            (
                "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused",
                Cause::ConnectionRefused,
            ),
            (
                "nohost:9092/bootstrap: Failed to resolve 'nohost:9092': Name or service not known",
                Cause::UnknownHost,
            ),
        ];
        for (reason, cause) in cases {
            assert_eq!(Cause::of_reason(reason), Some(cause), "{reason}");
        }
        assert_eq!(Cause::of_reason("1/1 brokers are down"), None);
    }

    #[test]
    fn causes_from_the_brokers_are_decisive_unreachable_ones_are_not() {
        assert!(Cause::Authentication.is_decisive());
        assert!(Cause::NotTls.is_decisive());
        assert!(!Cause::ConnectionRefused.is_decisive());
        assert!(!Cause::UnknownHost.is_decisive());
    }
}
