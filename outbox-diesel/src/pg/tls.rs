//! The native-tls connector libpq's settings ask for; native-tls (OpenSSL on
//! Linux) does all the certificate checking.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use native_tls::{Certificate, Identity, TlsConnector};

use super::conninfo::{SslMode, TlsSettings};

/// A TLS setting that could not be turned into a connector.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsSetupError {
    /// A file named by a setting could not be read.
    #[error("cannot read {key} file {}", .path.display())]
    Read {
        /// `sslrootcert`, `sslcert` or `sslkey`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A verifying mode without a root certificate, as libpq refuses it.
    #[error(
        "root certificate file {} does not exist: give one with sslrootcert, use the \
         system's roots with sslrootcert=system, or use an sslmode that does not verify \
         the server (sslmode={mode})", .path.display()
    )]
    NoRootCert {
        /// libpq's default file, `~/.postgresql/root.crt`.
        path: PathBuf,
        /// The mode that needs it.
        mode: SslMode,
    },
    /// A file holds no usable PEM.
    #[error("{key} file {} is not {expected}", .path.display())]
    Pem {
        /// The setting.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What the file should hold.
        expected: &'static str,
        /// What the TLS library said.
        #[source]
        source: native_tls::Error,
    },
    /// The root certificate file holds no certificate.
    #[error("sslrootcert file {} holds no PEM certificate (`BEGIN CERTIFICATE`)", .0.display())]
    NoCertificate(PathBuf),
    /// `sslcert` without `sslkey`, or the other way round.
    #[error("{given} is set but {missing} is not: a client certificate needs both")]
    HalfIdentity {
        /// The setting given.
        given: &'static str,
        /// The setting missing.
        missing: &'static str,
    },
    /// The TLS library refused the settings.
    #[error("TLS setup failed")]
    Build(#[source] native_tls::Error),
}

/// Connectors already built, with the modification times of the files they
/// were built from: building one loads OpenSSL's default roots (tens of
/// milliseconds), too slow for every connection of a pool, while a file
/// replaced on disk (a rotated certificate) must be read again, as libpq does.
static CONNECTORS: Mutex<Option<HashMap<TlsSettings, Built>>> = Mutex::new(None);

/// More distinct settings than any program uses; past it the cache starts over.
const CACHE_LIMIT: usize = 16;

struct Built {
    files: Vec<Option<SystemTime>>,
    connector: TlsConnector,
}

/// The connector for `settings` (whose mode is not `disable`): the one built
/// before for the same settings and unchanged files, or a new one.
pub(crate) fn connector(settings: &TlsSettings) -> Result<TlsConnector, TlsSetupError> {
    let root_cert = root_cert_file(settings)?;
    let files = file_times(settings, &root_cert);
    let mut cache = CONNECTORS.lock().unwrap_or_else(PoisonError::into_inner);
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(built) = cache.get(settings).filter(|built| built.files == files) {
        return Ok(built.connector.clone());
    }
    let connector = build(settings, root_cert)?;
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
    let built = Built {
        files,
        connector: connector.clone(),
    };
    cache.insert(settings.clone(), built);
    Ok(connector)
}

/// When the files a connector is built from last changed (`None`: unreadable).
fn file_times(settings: &TlsSettings, root_cert: &RootCert) -> Vec<Option<SystemTime>> {
    let root = match root_cert {
        RootCert::File(path) => Some(path.as_path()),
        RootCert::None | RootCert::System => None,
    };
    [
        root,
        settings.cert.as_deref().map(Path::new),
        settings.key.as_deref().map(Path::new),
    ]
    .into_iter()
    .flatten()
    .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
    .collect()
}

fn build(settings: &TlsSettings, root_cert: RootCert) -> Result<TlsConnector, TlsSetupError> {
    let mut builder = TlsConnector::builder();
    match root_cert {
        RootCert::System => {}
        RootCert::File(ref path) => {
            let pem = read("sslrootcert", path)?;
            let certs = Certificate::stack_from_pem(&pem).map_err(|source| TlsSetupError::Pem {
                key: "sslrootcert",
                path: path.clone(),
                expected: "one or more PEM certificates",
                source,
            })?;
            if certs.is_empty() {
                return Err(TlsSetupError::NoCertificate(path.clone()));
            }
            // libpq trusts the file's roots only, not the system's as well.
            builder.disable_built_in_roots(true);
            for cert in certs {
                builder.add_root_certificate(cert);
            }
        }
        RootCert::None => {
            // require/prefer/allow without a root certificate: encrypted, unchecked.
            builder.danger_accept_invalid_certs(true);
        }
    }
    if settings.mode != SslMode::VerifyFull {
        builder.danger_accept_invalid_hostnames(true);
    }
    if let Some(identity) = identity(settings)? {
        builder.identity(identity);
    }
    builder.build().map_err(TlsSetupError::Build)
}

enum RootCert {
    None,
    System,
    File(PathBuf),
}

/// libpq's rule: `sslrootcert`, else `~/.postgresql/root.crt` if it exists;
/// required by the verifying modes, and checked by the others when present.
fn root_cert_file(settings: &TlsSettings) -> Result<RootCert, TlsSetupError> {
    match settings.root_cert.as_deref() {
        Some("system") => return Ok(RootCert::System),
        Some(path) => return Ok(RootCert::File(PathBuf::from(path))),
        None => {}
    }
    let default =
        std::env::var_os("HOME").map(|home| Path::new(&home).join(".postgresql").join("root.crt"));
    match default {
        Some(path) if path.is_file() => Ok(RootCert::File(path)),
        Some(path) if settings.mode.verifies() => Err(TlsSetupError::NoRootCert {
            path,
            mode: settings.mode,
        }),
        None if settings.mode.verifies() => Err(TlsSetupError::NoRootCert {
            path: PathBuf::from("~/.postgresql/root.crt"),
            mode: settings.mode,
        }),
        _ => Ok(RootCert::None),
    }
}

fn identity(settings: &TlsSettings) -> Result<Option<Identity>, TlsSetupError> {
    let (cert, key) = match (&settings.cert, &settings.key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (Path::new(cert), Path::new(key)),
        (Some(_), None) => {
            return Err(TlsSetupError::HalfIdentity {
                given: "sslcert",
                missing: "sslkey",
            });
        }
        (None, Some(_)) => {
            return Err(TlsSetupError::HalfIdentity {
                given: "sslkey",
                missing: "sslcert",
            });
        }
    };
    let identity = Identity::from_pkcs8(&read("sslcert", cert)?, &read("sslkey", key)?);
    identity.map(Some).map_err(|source| TlsSetupError::Pem {
        key: "sslkey",
        path: key.to_owned(),
        expected: "a PEM PKCS#8 private key (`BEGIN PRIVATE KEY`) matching sslcert \
                   (convert one with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`)",
        source,
    })
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: SslMode, root_cert: Option<&str>) -> TlsSettings {
        TlsSettings {
            mode,
            root_cert: root_cert.map(str::to_owned),
            cert: None,
            key: None,
        }
    }

    #[test]
    fn a_missing_root_certificate_names_the_file() {
        let error =
            connector(&settings(SslMode::VerifyFull, Some("/nonexistent/ca.pem"))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot read sslrootcert file /nonexistent/ca.pem"
        );
        assert!(std::error::Error::source(&error).is_some());
    }

    #[test]
    fn a_file_that_is_not_pem_is_named() {
        let error = connector(&settings(SslMode::VerifyCa, Some("Cargo.toml"))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "sslrootcert file Cargo.toml holds no PEM certificate (`BEGIN CERTIFICATE`)"
        );
    }

    #[test]
    fn a_half_client_identity_is_refused() {
        let mut half = settings(SslMode::Require, None);
        half.cert = Some("client.pem".to_owned());
        let error = connector(&half).unwrap_err();
        assert_eq!(
            error.to_string(),
            "sslcert is set but sslkey is not: a client certificate needs both"
        );
    }

    #[test]
    fn modes_that_do_not_verify_need_no_root_certificate() {
        for mode in [SslMode::Allow, SslMode::Prefer, SslMode::Require] {
            connector(&settings(mode, None)).unwrap();
        }
        connector(&settings(SslMode::VerifyFull, Some("system"))).unwrap();
    }
}
