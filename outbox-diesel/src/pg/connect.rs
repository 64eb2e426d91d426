//! The one place that opens diesel-async connections: tokio-postgres with
//! libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` (diesel-async's own
//! `establish` connects without TLS and refuses `verify-ca`/`verify-full`).

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::tls::{NoTlsStream, TlsStream};
use tokio_postgres::{Client, Connection, NoTls, Socket};

use super::conninfo::{ConnInfo, SslMode};
use super::tls;
use crate::error::{Error, Result, mask_password};

/// A diesel-async connection to `url`, over TLS as its `sslmode` says.
///
/// `url` is a libpq connection string, URL (`postgres://user@host/db?sslmode=..`)
/// or `key=value` form. Its TLS settings mean what they mean to libpq, with the
/// differences listed below:
///
/// | `sslmode` | TLS | server certificate |
/// |---|---|---|
/// | `disable` | never | - |
/// | `allow` | only if plaintext is refused | not checked (1) |
/// | `prefer` (default) | if the server offers it | not checked (1) |
/// | `require` | always | not checked (1) |
/// | `verify-ca` | always | chain checked against `sslrootcert` |
/// | `verify-full` | always | chain and host name checked |
///
/// (1) Unless there is a root certificate (`sslrootcert`, or the default file):
/// then its chain is checked, as by `verify-ca`.
///
/// `sslrootcert` is a PEM file of the roots to trust (default
/// `~/.postgresql/root.crt`), or `system` for the system's roots (which implies,
/// and needs, `verify-full`). `sslcert` and `sslkey` give a client certificate
/// (PEM). The relay (`outbox relay`) and [`pool`](crate::pool) connect through
/// this function; use it in a pool of your own with diesel-async's
/// `ManagerConfig::custom_setup`.
///
/// # Differences from libpq
///
/// The connection is made by tokio-postgres with native-tls (OpenSSL), not by
/// libpq, so the same string can be read differently by sync Diesel:
///
/// - `prefer` does not fall back to plaintext when the server offers TLS and
///   the handshake fails (libpq tries again without TLS): the connection fails.
/// - The key in `sslkey` must be PKCS#8 PEM (`BEGIN PRIVATE KEY`), unencrypted;
///   convert a `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY` one with
///   `openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.pk8.pem`.
/// - `sslcert` without `sslkey` (or the other way round) is an error: libpq
///   would look for `~/.postgresql/postgresql.key`. There is no default client
///   certificate either (libpq's `~/.postgresql/postgresql.crt`).
/// - No `PG*` environment variable (`PGSSLMODE`, `PGPASSWORD`, ...) and no
///   service or password file is read.
/// - `sslpassword`, `sslcrl`, `sslcrldir`, `ssl_min_protocol_version`,
///   `ssl_max_protocol_version` and `sslkeylogfile` are refused with an error
///   naming the setting; so are `sslsni`, `sslcompression`, `sslcertmode` and
///   `gssencmode` unless they ask for what is done anyway (`sslsni=1`,
///   `sslcompression=0`, `sslcertmode=allow`, `gssencmode=disable` or `prefer`:
///   there is no GSSAPI encryption). Other settings tokio-postgres does not know
///   are refused as an "unknown option", named.
///
/// # Errors
///
/// [`Error::Connection`] naming `url` (password masked) and the cause: an
/// invalid setting (an unknown `sslmode` lists the valid ones), a libpq setting
/// that is not supported here (named), a certificate
/// file that cannot be read, a server without TLS under `require`, a certificate
/// that fails verification, or what the server said.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), outbox_diesel::Error> {
/// let url = "postgres://app@db.internal/app?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem";
/// let mut conn = outbox_diesel::establish(url).await?;
/// # Ok(()) }
/// ```
pub async fn establish(url: &str) -> Result<AsyncPgConnection> {
    connect(url).await.map_err(|source| Error::Connection {
        url: mask_password(url),
        source,
    })
}

/// [`establish`] for diesel-async's `ManagerConfig::custom_setup`: the error is
/// diesel's [`ConnectionError`], its text naming the URL (password masked) and
/// the cause.
///
/// # Errors
///
/// As [`establish`].
///
/// # Examples
///
/// ```
/// use diesel_async::AsyncPgConnection;
/// use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
///
/// let mut config = ManagerConfig::<AsyncPgConnection>::default();
/// config.custom_setup = Box::new(outbox_diesel::establish_setup);
/// let url = "postgres://app@db.internal/app?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem";
/// let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
/// ```
pub fn establish_setup(url: &str) -> BoxFuture<'_, diesel::ConnectionResult<AsyncPgConnection>> {
    let url = url.to_owned();
    async move {
        connect(&url).await.map_err(|cause| {
            ConnectionError::BadConnection(format!(
                "could not connect to PostgreSQL at {}: {cause}",
                mask_password(&url)
            ))
        })
    }
    .boxed()
}

/// The connection, or diesel's error holding the cause only (the caller names the URL).
async fn connect(url: &str) -> std::result::Result<AsyncPgConnection, ConnectionError> {
    let info =
        ConnInfo::parse(url).map_err(|e| ConnectionError::InvalidConnectionUrl(e.to_string()))?;
    let mut config: tokio_postgres::Config = info
        .rest
        .parse()
        .map_err(|e| ConnectionError::InvalidConnectionUrl(crate::error::error_chain(&e)))?;
    let mode = info.tls.mode;
    if mode == SslMode::Disable {
        return finish(plaintext(&config).await, mode).await;
    }
    let connector = tls::connector(&info.tls)
        .map_err(|e| ConnectionError::BadConnection(crate::error::error_chain(&e)))?;
    if mode == SslMode::Allow {
        match plaintext(&config).await {
            // The server answered and refused plaintext: try again over TLS.
            Err(refused) if refused.as_db_error().is_some() => {}
            done => return finish(done, mode).await,
        }
    }
    config.ssl_mode(if mode == SslMode::Prefer {
        tokio_postgres::config::SslMode::Prefer
    } else {
        tokio_postgres::config::SslMode::Require
    });
    finish(config.connect(MakeTlsConnector::new(connector)).await, mode).await
}

async fn plaintext(
    config: &tokio_postgres::Config,
) -> std::result::Result<(Client, Connection<Socket, NoTlsStream>), tokio_postgres::Error> {
    let mut config = config.clone();
    config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    config.connect(NoTls).await
}

/// The diesel-async connection on top of what tokio-postgres made.
async fn finish<S>(
    connected: std::result::Result<(Client, Connection<Socket, S>), tokio_postgres::Error>,
    mode: SslMode,
) -> std::result::Result<AsyncPgConnection, ConnectionError>
where
    S: TlsStream + Unpin + Send + 'static,
{
    let (client, connection) =
        connected.map_err(|e| ConnectionError::BadConnection(describe(&e, mode)))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

/// What went wrong, said once: tokio-postgres's kind ("error performing TLS
/// handshake") is replaced by the cause, OpenSSL's error codes dropped.
fn describe(error: &tokio_postgres::Error, mode: SslMode) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let kind = error.to_string();
    let Some(cause) = std::error::Error::source(error) else {
        return kind;
    };
    if kind != "error performing TLS handshake" {
        return format!("{kind}: {}", crate::error::error_chain(cause));
    }
    // native-tls's text already holds OpenSSL's, which is also its source.
    let cause_text = cause.to_string();
    if cause_text == "server does not support TLS" {
        return format!("the server does not support TLS (sslmode={mode})");
    }
    format!("TLS: {}", openssl_reason(&cause_text))
}

/// `error:0A000086:SSL routines:tls_post_process_server_certificate:certificate
/// verify failed:ssl/statem/statem_clnt.c:2091: (self-signed certificate)` ->
/// `certificate verify failed (self-signed certificate)`; other text unchanged.
fn openssl_reason(text: &str) -> String {
    let Some(rest) = text.strip_prefix("error:") else {
        return text.to_owned();
    };
    let fields: Vec<&str> = rest.splitn(5, ':').collect();
    let [_code, _library, _function, reason, location] = fields[..] else {
        return text.to_owned();
    };
    match location.find(" (") {
        Some(at) => format!("{reason}{}", &location[at..]),
        None => reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_codes_are_dropped_and_the_verify_result_kept() {
        assert_eq!(
            openssl_reason(
                "error:0A000086:SSL routines:tls_post_process_server_certificate:\
                 certificate verify failed:../ssl/statem/statem_clnt.c:2091: \
                 (self-signed certificate in certificate chain)"
            ),
            "certificate verify failed (self-signed certificate in certificate chain)"
        );
        assert_eq!(
            openssl_reason("error:0A000086:SSL routines:f:wrong version number:s.c:1:"),
            "wrong version number"
        );
        assert_eq!(openssl_reason("connection reset"), "connection reset");
    }

    #[tokio::test]
    async fn an_unknown_mode_fails_before_connecting_and_names_the_url() {
        let url = "postgres://app:secret@127.0.0.1:1/app?sslmode=verify";
        let error = establish(url).await.err().unwrap();
        let text = crate::error::error_chain(&error);
        assert_eq!(
            text,
            "could not connect to PostgreSQL at postgres://app:***@127.0.0.1:1/app?sslmode=verify: \
             invalid `sslmode`: unknown value `verify`: expected one of disable, allow, prefer, \
             require, verify-ca, verify-full"
        );
    }

    #[tokio::test]
    async fn a_libpq_only_setting_is_named_before_connecting() {
        let url = "host=127.0.0.1 port=1 password=pw sslpassword=keypass sslmode=require";
        let error = establish(url).await.err().unwrap();
        assert_eq!(
            crate::error::error_chain(&error),
            "could not connect to PostgreSQL at host=127.0.0.1 port=1 password=*** \
             sslpassword=*** sslmode=require: invalid `sslpassword`: a libpq setting the async \
             connections (tokio-postgres) do not support: remove it from the connection string"
        );
    }

    /// A server that answers the TLS request with `N` (no TLS), as PostgreSQL
    /// with `ssl = off` does, then hangs up.
    async fn server_without_tls() -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0; 8];
                if socket.read_exact(&mut request).await.is_ok() {
                    let _ = socket.write_all(b"N").await;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn require_against_a_server_without_tls_says_so() {
        let addr = server_without_tls().await;
        let url = format!("postgres://app:pw@{addr}/app?sslmode=require");
        let error = establish(&url).await.err().unwrap();
        assert_eq!(
            crate::error::error_chain(&error),
            format!(
                "could not connect to PostgreSQL at postgres://app:***@{addr}/app?sslmode=require: \
                 the server does not support TLS (sslmode=require)"
            )
        );
    }

    #[tokio::test]
    async fn a_missing_root_certificate_fails_before_connecting() {
        let url = "host=127.0.0.1 port=1 sslmode=verify-full sslrootcert=/nonexistent/ca.pem";
        let error = establish_setup(url).await.err().unwrap();
        assert_eq!(
            error.to_string(),
            "could not connect to PostgreSQL at host=127.0.0.1 port=1 sslmode=verify-full \
             sslrootcert=/nonexistent/ca.pem: cannot read sslrootcert file /nonexistent/ca.pem: \
             No such file or directory (os error 2)"
        );
    }
}
