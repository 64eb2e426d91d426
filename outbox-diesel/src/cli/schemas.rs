//! `outbox schemas export | register | check [--against DIR]`: the Avro
//! schemas of the models a service's own binary names ([`Schemas`]), written
//! as files for other teams and CI, registered in a schema registry (the
//! release task), and checked: produced models against the registry's
//! versions under the subject's level, consumed models against what the
//! registry holds, or against a producer's files without a registry.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use outbox::Outboxed;
use outbox::avro::{AgainstReport, WriterSchema, describe, full_name};

use super::Failure;
use crate::registry::{SchemaRegistry, SubjectStrategy};

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

/// [`outbox::avro::export`] of one model: its folder and the files written.
type ExportFn = fn(&Path) -> outbox::Result<(PathBuf, Vec<String>)>;

/// What `outbox schemas` needs of one model.
#[derive(Debug, Clone)]
struct Model {
    name: &'static str,
    topic: &'static str,
    versions: &'static [u32],
    consumed: bool,
    avro: fn(u32) -> outbox::Result<&'static str>,
    export: ExportFn,
    against: fn(&Path) -> outbox::Result<AgainstReport>,
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
        self.models.push(Model {
            name: outbox::avro::model_name::<M>(),
            topic: M::TOPIC,
            versions: M::VERSIONS,
            consumed,
            avro: M::avro_schema,
            export: |dir| outbox::avro::export::<M>(dir),
            against: |dir| outbox::avro::check_against::<M>(dir),
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
    /// Register every version of the models this binary produces in the schema
    /// registry of SCHEMA_REGISTRY_URL (the service's release task; registering
    /// again changes nothing)
    Register(RegistryArgs),
    /// Check the models against the schema registry of SCHEMA_REGISTRY_URL (produced
    /// ones under their subject's compatibility level, consumed ones against every
    /// registered version), or with --against a producer's export, with no registry;
    /// exits 1 naming what does not fit
    Check {
        /// A producer's export (`schemas export` of the producer's binary) to check
        /// the consumed models against, instead of the registry
        #[arg(long, value_name = "DIR")]
        against: Option<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// How subjects are named in the registry.
#[derive(Debug, Args)]
pub(super) struct RegistryArgs {
    /// Subject names: `topic` (<topic>-value), `record` (<namespace>.<Name>) or
    /// `topic-record` (<topic>-<namespace>.<Name>)
    #[arg(long, value_enum, default_value_t = Strategy::Topic, value_name = "STRATEGY")]
    subject_strategy: Strategy,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Strategy {
    Topic,
    Record,
    TopicRecord,
}

impl Strategy {
    fn subjects(self) -> SubjectStrategy {
        match self {
            Strategy::Topic => SubjectStrategy::TopicName,
            Strategy::Record => SubjectStrategy::RecordName,
            Strategy::TopicRecord => SubjectStrategy::TopicRecordName,
        }
    }
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
        SchemasCommand::Check {
            against: Some(against),
            ..
        } => check(schemas, &against),
        SchemasCommand::Check {
            against: None,
            registry,
        } => with_registry(|r| check_registry(schemas, r, registry.subject_strategy.subjects())),
        SchemasCommand::Register(registry) => {
            with_registry(|r| register(schemas, r, registry.subject_strategy.subjects()))
        }
    }
}

/// Runs `work` with the registry of the `SCHEMA_REGISTRY_*` settings.
fn with_registry<F, Fut>(work: F) -> Result<String, Failure>
where
    F: FnOnce(SchemaRegistry) -> Fut,
    Fut: std::future::Future<Output = Result<String, Failure>>,
{
    let registry =
        SchemaRegistry::from_env().map_err(|e| Failure::from_error(Some("schemas"), &e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::from_error(Some("starting the async runtime"), &e))?;
    runtime.block_on(work(registry))
}

fn registry_failure(error: &crate::registry::RegistryError) -> Failure {
    Failure::from_error(Some("schemas"), error)
}

/// Each produced or consumed model with its subject; two records on one
/// subject are refused (under `topic`, a topic's models need `record` or
/// `topic-record`).
fn subjects(
    schemas: &Schemas,
    consumed: bool,
    strategy: SubjectStrategy,
) -> Result<Vec<(&Model, String)>, Failure> {
    let mut named: Vec<(&Model, String)> = Vec::new();
    let mut records: BTreeMap<String, String> = BTreeMap::new();
    for model in schemas.models.iter().filter(|m| m.consumed == consumed) {
        let write = *model.versions.last().unwrap_or(&1);
        let avro = (model.avro)(write).map_err(|e| schema_failure(model, &e))?;
        let record = full_name(avro);
        let subject = strategy.subject(model.topic, &record);
        if let Some(other) = records.get(&subject).filter(|other| **other != record) {
            return Err(Failure::usage(format!(
                "schemas: records `{other}` and `{record}` would share subject `{subject}`; \
                 name subjects with --subject-strategy record or topic-record"
            )));
        }
        records.insert(subject.clone(), record);
        named.push((model, subject));
    }
    Ok(named)
}

async fn register(
    schemas: &Schemas,
    registry: SchemaRegistry,
    strategy: SubjectStrategy,
) -> Result<String, Failure> {
    let mut out = String::new();
    let produced = subjects(schemas, false, strategy)?;
    if produced.is_empty() {
        return Err(Failure::usage(
            "schemas register: this binary produces no model (name them with `.produces::<M>()`)",
        ));
    }
    for (model, subject) in produced {
        for &version in model.versions {
            let avro = (model.avro)(version).map_err(|e| schema_failure(model, &e))?;
            let id = registry
                .register(&subject, avro)
                .await
                .map_err(|e| registry_failure(&e))?;
            let _ = writeln!(out, "{subject}: `{}` v{version} → id {id}", model.name);
        }
    }
    Ok(out)
}

/// The versions of `subject` a level compares a new schema with, and in
/// which direction(s): (versions, new reads old, old reads new).
fn compared(level: &str, versions: &[u32]) -> (Vec<u32>, bool, bool) {
    let transitive = level.ends_with("_TRANSITIVE");
    let chosen = if transitive {
        versions.to_vec()
    } else {
        versions.last().copied().into_iter().collect()
    };
    let base = level.trim_end_matches("_TRANSITIVE");
    let backward = matches!(base, "BACKWARD" | "FULL");
    let forward = matches!(base, "FORWARD" | "FULL");
    (chosen, backward, forward)
}

async fn check_registry(
    schemas: &Schemas,
    registry: SchemaRegistry,
    strategy: SubjectStrategy,
) -> Result<String, Failure> {
    let mut out = String::new();
    let mut failed = 0;
    for (model, subject) in subjects(schemas, false, strategy)? {
        let write = *model.versions.last().unwrap_or(&1);
        let avro = (model.avro)(write).map_err(|e| schema_failure(model, &e))?;
        let level = registry
            .level(&subject)
            .await
            .map_err(|e| registry_failure(&e))?;
        let verdict = registry
            .check(&subject, avro)
            .await
            .map_err(|e| registry_failure(&e))?;
        let head = format!("{subject}: `{}` v{write}", model.name);
        if verdict.compatible {
            let _ = writeln!(out, "{head}: compatible ({level})");
            continue;
        }
        failed += 1;
        // The registry may give no reason (Apicurio does not): find them here.
        let ours = WriterSchema::parse(avro).map_err(|e| schema_failure(model, &e))?;
        let versions = registry
            .versions(&subject)
            .await
            .map_err(|e| registry_failure(&e))?;
        let (chosen, backward, forward) = compared(&level, &versions);
        let mut reasons = verdict.messages.clone();
        for version in chosen {
            let registered = registry
                .version(&subject, version)
                .await
                .map_err(|e| registry_failure(&e))?;
            let Ok(theirs) = WriterSchema::parse(&registered.schema) else {
                continue;
            };
            let mut problems = Vec::new();
            if backward {
                problems.extend(theirs.check_read(&ours).problems);
            }
            if forward {
                problems.extend(ours.check_read(&theirs).problems);
            }
            reasons.extend(
                problems
                    .into_iter()
                    .map(|p| format!("subject version {version}: {p}")),
            );
        }
        if reasons.is_empty() {
            reasons.push("the registry gives no reason".into());
        }
        let _ = writeln!(
            out,
            "{head}: NOT compatible ({level}): {}",
            reasons.join("; ")
        );
    }
    for (model, subject) in subjects(schemas, true, strategy)? {
        for version in registry
            .versions(&subject)
            .await
            .map_err(|e| registry_failure(&e))?
        {
            let registered = registry
                .version(&subject, version)
                .await
                .map_err(|e| registry_failure(&e))?;
            let writer = WriterSchema::parse(&registered.schema).map_err(|e| {
                Failure::runtime(format!("schemas: {subject} version {version}: {e}"))
            })?;
            let as_version = *model.versions.last().unwrap_or(&1);
            let reader = (model.avro)(as_version)
                .and_then(WriterSchema::parse)
                .map_err(|e| schema_failure(model, &e))?;
            let result = writer.check_read(&reader);
            let line = describe(
                format!(
                    "{subject}: `{}` v{as_version} reads subject version {version} (id {})",
                    model.name, registered.id
                ),
                &result,
            );
            if !result.readable() {
                failed += 1;
            }
            let _ = writeln!(out, "{line}");
        }
    }
    if failed > 0 {
        let mut failure = Failure::runtime(format!(
            "schemas check: {failed} model(s) or version(s) do not fit the registry's"
        ));
        failure.output = out;
        return Err(failure);
    }
    Ok(out)
}

fn schema_failure(model: &Model, error: &outbox::Error) -> Failure {
    Failure::runtime(format!("schemas: `{}`: {error}", model.name))
}

fn export(schemas: &Schemas, dir: &Path) -> Result<String, Failure> {
    let mut out = String::new();
    for model in schemas.models.iter().filter(|m| !m.consumed) {
        let (folder, files) = (model.export)(dir).map_err(|e| schema_failure(model, &e))?;
        let _ = writeln!(out, "wrote {} ({})", folder.display(), files.join(", "));
    }
    if out.is_empty() {
        return Err(Failure::usage(
            "schemas export: this binary produces no model (name them with `.produces::<M>()`)",
        ));
    }
    Ok(out)
}

fn check(schemas: &Schemas, against: &Path) -> Result<String, Failure> {
    let consumed: Vec<&Model> = schemas.models.iter().filter(|m| m.consumed).collect();
    if consumed.is_empty() {
        return Err(Failure::usage(
            "schemas check: this binary consumes no model (name them with `.consumes::<M>()`)",
        ));
    }
    let mut out = String::new();
    let mut unreadable = 0;
    for model in consumed {
        let report =
            (model.against)(against).map_err(|e| Failure::runtime(format!("schemas: {e}")))?;
        unreadable += report
            .producer_versions
            .iter()
            .filter(|(_, _, check)| !check.readable())
            .count();
        if report.producer_versions.is_empty() {
            unreadable += 1;
        }
        out.push_str(&report.to_string());
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
    use super::compared;

    #[test]
    fn a_level_names_the_versions_and_directions_compared() {
        assert_eq!(compared("BACKWARD", &[1, 2, 3]), (vec![3], true, false));
        assert_eq!(
            compared("FORWARD_TRANSITIVE", &[1, 2]),
            (vec![1, 2], false, true)
        );
        assert_eq!(compared("FULL", &[4]), (vec![4], true, true));
        assert_eq!(compared("NONE", &[1]), (vec![1], false, false));
    }
}
