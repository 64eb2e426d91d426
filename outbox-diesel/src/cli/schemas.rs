//! `outbox schemas export | check --against`: the Avro schemas of the models a
//! service's own binary names ([`Schemas`]), written as files for other teams
//! and CI, and a consumer's models checked against a producer's files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use outbox::Outboxed;
use outbox::avro::WriterSchema;
use serde_json::{Value, json};

use super::Failure;

/// The models a service's binary knows, for `outbox schemas`: those it
/// produces (their schemas are exported) and those it consumes (checked
/// against a producer's export). Hand it to [`main_with`](super::main_with).
///
/// # Examples
///
/// ```no_run
/// use outbox::Outboxed;
/// use outbox_diesel::cli::Schemas;
///
/// #[derive(Outboxed)]
/// #[outbox(topic = "accounts", route = "users", avro)]
/// struct User { id: i64 }
///
/// #[derive(Outboxed)]
/// #[outbox(topic = "orders", route = "orders", avro)]
/// struct Order { id: i64 }
///
/// fn main() -> std::process::ExitCode {
///     outbox_diesel::cli::main_with(Schemas::new().produces::<User>().consumes::<Order>())
/// }
/// ```
#[derive(Debug, Default, Clone)]
pub struct Schemas {
    models: Vec<Model>,
}

/// What `outbox schemas` needs of one model.
#[derive(Debug, Clone)]
struct Model {
    name: &'static str,
    topic: &'static str,
    route: &'static str,
    versions: &'static [u32],
    consumed: bool,
    avro: fn(u32) -> outbox::Result<&'static str>,
    json: fn(u32) -> outbox::Result<&'static Value>,
}

impl Schemas {
    /// No models: `outbox schemas` then says how to name them.
    pub fn new() -> Self {
        Schemas::default()
    }

    /// A model this service writes: `schemas export` writes its schemas.
    pub fn produces<M: Outboxed>(self) -> Self {
        self.with::<M>(false)
    }

    /// A model this service reads: `schemas check --against` checks it.
    pub fn consumes<M: Outboxed>(self) -> Self {
        self.with::<M>(true)
    }

    fn with<M: Outboxed>(mut self, consumed: bool) -> Self {
        let name = std::any::type_name::<M>();
        self.models.push(Model {
            name: name.rsplit("::").next().unwrap_or(name),
            topic: M::TOPIC,
            route: M::ROUTE,
            versions: M::VERSIONS,
            consumed,
            avro: M::avro_schema,
            json: M::json_schema,
        });
        self
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum SchemasCommand {
    /// Write the Avro schema and the JSON Schema of every version of the models this
    /// binary produces: DIR/<topic>/<route>/v<N>.avsc, v<N>.schema.json, model.json
    Export {
        /// The folder to write into (created when missing)
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Check that the models this binary consumes read every version a producer
    /// exported (`schemas export` of the producer's binary); exits 1 when one cannot
    Check {
        /// The producer's export
        #[arg(long, value_name = "DIR")]
        against: PathBuf,
    },
}

pub(super) fn run(schemas: &Schemas, command: SchemasCommand) -> Result<String, Failure> {
    if schemas.models.is_empty() {
        return Err(Failure::usage(
            "schemas: this binary names no models; embed the command line in your service's \
             binary with `outbox_diesel::cli::main_with(Schemas::new().produces::<M>()…)`",
        ));
    }
    match command {
        SchemasCommand::Export { dir } => export(schemas, &dir),
        SchemasCommand::Check { against } => check(schemas, &against),
    }
}

fn io_failure(path: &Path, error: &std::io::Error) -> Failure {
    Failure::runtime(format!("schemas: {}: {error}", path.display()))
}

fn schema_failure(model: &Model, error: &outbox::Error) -> Failure {
    Failure::runtime(format!("schemas: `{}`: {error}", model.name))
}

fn export(schemas: &Schemas, dir: &Path) -> Result<String, Failure> {
    let mut out = String::new();
    for model in schemas.models.iter().filter(|m| !m.consumed) {
        let folder = dir.join(model.topic).join(model.route);
        std::fs::create_dir_all(&folder).map_err(|e| io_failure(&folder, &e))?;
        let mut files = Vec::new();
        let mut full_name = String::new();
        for &version in model.versions {
            let avro = (model.avro)(version).map_err(|e| schema_failure(model, &e))?;
            let json = (model.json)(version).map_err(|e| schema_failure(model, &e))?;
            if full_name.is_empty() {
                let parsed: Value = serde_json::from_str(avro).unwrap_or_default();
                full_name = match parsed["namespace"].as_str() {
                    Some(ns) => format!("{ns}.{}", parsed["name"].as_str().unwrap_or("")),
                    None => parsed["name"].as_str().unwrap_or("").to_owned(),
                };
            }
            let pretty = serde_json::to_string_pretty(json).unwrap_or_default();
            for (name, text) in [
                (format!("v{version}.avsc"), format!("{avro}\n")),
                (format!("v{version}.schema.json"), format!("{pretty}\n")),
            ] {
                let path = folder.join(&name);
                std::fs::write(&path, text).map_err(|e| io_failure(&path, &e))?;
                files.push(name);
            }
        }
        let description = json!({
            "model": model.name,
            "topic": model.topic,
            "route": model.route,
            "versions": model.versions,
            "record": full_name,
        });
        let path = folder.join("model.json");
        let text = serde_json::to_string_pretty(&description).unwrap_or_default() + "\n";
        std::fs::write(&path, text).map_err(|e| io_failure(&path, &e))?;
        files.push("model.json".into());
        let _ = writeln!(out, "wrote {} ({})", folder.display(), files.join(", "));
    }
    if out.is_empty() {
        return Err(Failure::usage(
            "schemas export: this binary produces no model (name them with `.produces::<M>()`)",
        ));
    }
    Ok(out)
}

/// The version a consumer on `known` reads a producer's `version` as: the
/// same, else its highest below, else its lowest.
fn reader_version(known: &[u32], version: u32) -> u32 {
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

/// The producer's exported versions of a topic and route: `v<N>.avsc` files.
fn exported(folder: &Path) -> Result<BTreeMap<u32, PathBuf>, Failure> {
    let entries = std::fs::read_dir(folder).map_err(|e| io_failure(folder, &e))?;
    let mut versions = BTreeMap::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(version) = name
            .strip_prefix('v')
            .and_then(|rest| rest.strip_suffix(".avsc"))
            .and_then(|n| n.parse::<u32>().ok())
        {
            versions.insert(version, entry.path());
        }
    }
    Ok(versions)
}

fn check(schemas: &Schemas, against: &Path) -> Result<String, Failure> {
    let mut out = String::new();
    let mut unreadable = 0;
    let consumed: Vec<&Model> = schemas.models.iter().filter(|m| m.consumed).collect();
    if consumed.is_empty() {
        return Err(Failure::usage(
            "schemas check: this binary consumes no model (name them with `.consumes::<M>()`)",
        ));
    }
    for model in consumed {
        let folder = against.join(model.topic).join(model.route);
        let versions = exported(&folder)?;
        let _ = writeln!(
            out,
            "{}/{} (`{}`, versions {:?}) against {}:",
            model.topic,
            model.route,
            model.name,
            model.versions,
            folder.display()
        );
        if versions.is_empty() {
            unreadable += 1;
            let _ = writeln!(out, "  no v<N>.avsc file there: nothing to check");
            continue;
        }
        for (version, path) in versions {
            let text = std::fs::read_to_string(&path).map_err(|e| io_failure(&path, &e))?;
            let writer = WriterSchema::parse(&text)
                .map_err(|e| Failure::runtime(format!("schemas check: {}: {e}", path.display())))?;
            let as_version = reader_version(model.versions, version);
            let reader = (model.avro)(as_version)
                .and_then(WriterSchema::parse)
                .map_err(|e| schema_failure(model, &e))?;
            let result = writer.check_read(&reader);
            let mut line = format!("  producer v{version} read as v{as_version}: ");
            if result.readable() {
                line.push_str("ok");
            } else {
                unreadable += 1;
                line.push_str("NOT READABLE: ");
                line.push_str(&result.problems.join("; "));
            }
            for (what, fields) in [
                ("takes defaults for", &result.defaulted),
                ("ignores", &result.ignored),
            ] {
                if !fields.is_empty() {
                    let _ = write!(line, "; {what} {}", fields.join(", "));
                }
            }
            let _ = writeln!(out, "{line}");
        }
    }
    if unreadable > 0 {
        let mut failure = Failure::runtime(format!(
            "schemas check: {unreadable} producer version(s) cannot be read"
        ));
        failure.output = out;
        return Err(failure);
    }
    Ok(out)
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
