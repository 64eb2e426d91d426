//! A model's schemas as files (`<dir>/<topic>/<route>/v<N>.avsc`,
//! `v<N>.schema.json`, `model.json`): written by a producer ([`export`]), and
//! a consumer's model checked against them ([`check_against`]), with no
//! registry, e.g. in the consumer's CI against the producer's committed export.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::resolve::{ReadCheck, WriterSchema};
use crate::error::Error;
use crate::outboxed::Outboxed;

/// Writes every version's Avro schema and JSON Schema of `M`, and a
/// `model.json` (topic, route, versions, record name), into
/// `<dir>/<topic>/<route>/`. Returns the folder and the files written.
///
/// # Errors
///
/// [`Error::Export`] naming the path that could not be written; the
/// errors of [`Outboxed::avro_schema`].
///
/// # Examples
///
/// ```
/// use outbox::Outboxed;
///
/// #[derive(Outboxed)]
/// #[outbox(topic = "accounts", route = "users", versions = [1, 2], avro)]
/// struct User {
///     id: i64,
///     #[outbox(since = 2, default)]
///     nick: Option<String>,
/// }
///
/// let dir = std::env::temp_dir().join(format!("outbox-export-doc-{}", std::process::id()));
/// let (folder, files) = outbox::avro::export::<User>(&dir)?;
/// assert_eq!(folder, dir.join("accounts").join("users"));
/// assert_eq!(files, ["v1.avsc", "v1.schema.json", "v2.avsc", "v2.schema.json", "model.json"]);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), outbox::Error>(())
/// ```
pub fn export<M: Outboxed>(dir: impl AsRef<Path>) -> Result<(PathBuf, Vec<String>), Error> {
    let folder = dir.as_ref().join(M::TOPIC).join(M::ROUTE);
    std::fs::create_dir_all(&folder).map_err(|e| io_error(&folder, &e))?;
    let mut files = Vec::new();
    for &version in M::VERSIONS {
        let avro = M::avro_schema(version)?;
        let pretty = serde_json::to_string_pretty(M::json_schema(version)?).unwrap_or_default();
        for (name, text) in [
            (format!("v{version}.avsc"), format!("{avro}\n")),
            (format!("v{version}.schema.json"), format!("{pretty}\n")),
        ] {
            let path = folder.join(&name);
            std::fs::write(&path, text).map_err(|e| io_error(&path, &e))?;
            files.push(name);
        }
    }
    let newest = *M::VERSIONS.last().unwrap_or(&1);
    let description = json!({
        "model": model_name::<M>(),
        "topic": M::TOPIC,
        "route": M::ROUTE,
        "versions": M::VERSIONS,
        "record": full_name(M::avro_schema(newest)?),
    });
    let path = folder.join("model.json");
    let text = serde_json::to_string_pretty(&description).unwrap_or_default() + "\n";
    std::fs::write(&path, text).map_err(|e| io_error(&path, &e))?;
    files.push("model.json".to_owned());
    Ok((folder, files))
}

/// What a consumer's model makes of each version a producer exported.
#[derive(Debug, Clone)]
pub struct AgainstReport {
    /// The consumer's model (its type's name).
    pub model: &'static str,
    /// Its topic and route, where the producer's files were looked for.
    pub topic: &'static str,
    /// See `topic`.
    pub route: &'static str,
    /// The versions the consumer knows.
    pub versions: &'static [u32],
    /// The folder read.
    pub folder: PathBuf,
    /// Per producer version, ascending: the version the consumer reads it
    /// as (the same, else its highest below, else its lowest), and what it
    /// makes of it.
    pub producer_versions: Vec<(u32, u32, ReadCheck)>,
}

impl AgainstReport {
    /// Whether every exported version can be read (and there was one).
    pub fn readable(&self) -> bool {
        !self.producer_versions.is_empty()
            && self.producer_versions.iter().all(|(_, _, c)| c.readable())
    }

    /// Panics, printing the report, unless every exported version can be
    /// read: for a consumer's test.
    ///
    /// # Panics
    ///
    /// When a version cannot be read, or the folder holds none.
    #[track_caller]
    pub fn assert_reads_every_version(&self) {
        assert!(self.readable(), "{self}");
    }
}

impl fmt::Display for AgainstReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}/{} (`{}`, versions {:?}) against {}:",
            self.topic,
            self.route,
            self.model,
            self.versions,
            self.folder.display()
        )?;
        if self.producer_versions.is_empty() {
            writeln!(f, "  no v<N>.avsc file there: nothing to check")?;
        }
        for (version, as_version, check) in &self.producer_versions {
            writeln!(
                f,
                "{}",
                describe(
                    format!("  producer v{version} read as v{as_version}"),
                    check
                )
            )?;
        }
        Ok(())
    }
}

/// `head: ok` or `head: NOT READABLE: …`, then the defaulted and ignored fields.
#[doc(hidden)]
pub fn describe(head: String, check: &ReadCheck) -> String {
    let mut line = head + ": ";
    if check.readable() {
        line.push_str("ok");
    } else {
        line.push_str("NOT READABLE: ");
        line.push_str(&check.problems.join("; "));
    }
    for (what, fields) in [
        ("takes defaults for", &check.defaulted),
        ("ignores", &check.ignored),
    ] {
        if !fields.is_empty() {
            line.push_str(&format!("; {what} {}", fields.join(", ")));
        }
    }
    line
}

/// Checks `M`, a consumer's model, against a producer's export in `dir`
/// (`<dir>/<topic>/<route>/v<N>.avsc`, as [`export`] writes it): for every
/// version there, the version `M` reads it as, the fields it ignores, those
/// that take its defaults, and why a version cannot be read.
///
/// # Errors
///
/// [`Error::Export`] when the folder or a file cannot be read, or a file is
/// not an Avro record schema; the errors of [`Outboxed::avro_schema`].
///
/// # Examples
///
/// ```
/// use outbox::Outboxed;
///
/// #[derive(Outboxed)]
/// #[outbox(topic = "accounts", route = "users", versions = [1, 2], avro)]
/// struct User {
///     id: i64,
///     #[outbox(since = 2, default)]
///     nick: Option<String>,
/// }
///
/// /// A consumer that knows version 1 only.
/// #[derive(Outboxed)]
/// #[outbox(topic = "accounts", route = "users", avro)]
/// struct Reader {
///     id: i64,
/// }
///
/// let dir = std::env::temp_dir().join(format!("outbox-against-doc-{}", std::process::id()));
/// outbox::avro::export::<User>(&dir)?;
/// let report = outbox::avro::check_against::<Reader>(&dir)?;
/// report.assert_reads_every_version();
/// assert_eq!(report.producer_versions[1].2.ignored, ["nick"]);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), outbox::Error>(())
/// ```
pub fn check_against<M: Outboxed>(dir: impl AsRef<Path>) -> Result<AgainstReport, Error> {
    let folder = dir.as_ref().join(M::TOPIC).join(M::ROUTE);
    let entries = std::fs::read_dir(&folder).map_err(|e| io_error(&folder, &e))?;
    let mut exported: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = name
                .to_str()?
                .strip_prefix('v')?
                .strip_suffix(".avsc")?
                .parse::<u32>()
                .ok()?;
            Some((version, entry.path()))
        })
        .collect();
    exported.sort();
    let mut producer_versions = Vec::with_capacity(exported.len());
    for (version, path) in exported {
        let text = std::fs::read_to_string(&path).map_err(|e| io_error(&path, &e))?;
        let writer = WriterSchema::parse(&text).map_err(|e| Error::Export {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let as_version = reader_version(M::VERSIONS, version);
        let reader = WriterSchema::parse(M::avro_schema(as_version)?)?;
        producer_versions.push((version, as_version, writer.check_read(&reader)));
    }
    Ok(AgainstReport {
        model: model_name::<M>(),
        topic: M::TOPIC,
        route: M::ROUTE,
        versions: M::VERSIONS,
        folder,
        producer_versions,
    })
}

/// The version a consumer on `known` reads a producer's `version` as: the
/// same, else its highest below, else its lowest.
#[doc(hidden)]
pub fn reader_version(known: &[u32], version: u32) -> u32 {
    if known.contains(&version) {
        return version;
    }
    known
        .iter()
        .copied()
        .filter(|v| *v < version)
        .max()
        .or_else(|| known.first().copied())
        .unwrap_or(version)
}

/// The record's full name in a schema's text (`namespace.Name`).
#[doc(hidden)]
pub fn full_name(avro: &str) -> String {
    let parsed: serde_json::Value = serde_json::from_str(avro).unwrap_or_default();
    let name = parsed["name"].as_str().unwrap_or("");
    match parsed["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_owned(),
    }
}

/// The model's type name, without its path.
#[doc(hidden)]
pub fn model_name<M>() -> &'static str {
    let name = std::any::type_name::<M>();
    name.rsplit("::").next().unwrap_or(name)
}

fn io_error(path: &Path, error: &std::io::Error) -> Error {
    Error::Export {
        path: path.display().to_string(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::reader_version;

    #[test]
    fn a_consumer_reads_a_version_as_the_nearest_it_knows() {
        assert_eq!(reader_version(&[1, 2], 2), 2);
        assert_eq!(reader_version(&[1, 2], 5), 2);
        assert_eq!(reader_version(&[3, 4], 1), 3);
    }
}
