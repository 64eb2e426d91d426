//! `outbox schemas export | check --against`, in a binary that names its
//! models (`main_with`, `src/bin/outbox-with-models.rs`).

use std::path::Path;
use std::process::Command;

use super::support::run;

fn outbox(models: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outbox-with-models"));
    command.args(args).env("OUTBOX_TEST_MODELS", models);
    command
}

fn scratch() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("outbox-schemas-{}", uuid::Uuid::now_v7()))
}

fn export(dir: &Path) -> String {
    let dir = dir.to_str().unwrap();
    run(&mut outbox(
        "producer",
        &["schemas", "export", "--dir", dir],
    ))
    .success()
    .to_owned()
}

#[test]
fn export_writes_each_version_of_the_produced_models() {
    let dir = scratch();
    let printed = export(&dir);
    let folder = dir.join("identity.accounts").join("accounts");
    assert_eq!(
        printed,
        format!(
            "wrote {} (v1.avsc, v1.schema.json, v2.avsc, v2.schema.json, v3.avsc, v3.schema.json, model.json)\n",
            folder.display()
        )
    );
    let read = |name: &str| std::fs::read_to_string(folder.join(name)).unwrap();
    let v1: serde_json::Value = serde_json::from_str(&read("v1.avsc")).unwrap();
    assert_eq!(v1["name"], "Account");
    assert_eq!(v1["namespace"], "identity.accounts");
    assert_eq!(v1["fields"][1]["name"], "mail");
    let schema: serde_json::Value = serde_json::from_str(&read("v3.schema.json")).unwrap();
    assert_eq!(schema["required"], serde_json::json!(["id", "email"]));
    let model: serde_json::Value = serde_json::from_str(&read("model.json")).unwrap();
    assert_eq!(
        model,
        serde_json::json!({"model": "Account", "topic": "identity.accounts", "route": "accounts",
            "versions": [1, 2, 3], "record": "identity.accounts.Account"})
    );
    // Again: the same files, overwritten with the same text.
    assert_eq!(export(&dir), printed);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn check_against_an_export_reports_each_producer_version() {
    let dir = scratch();
    export(&dir);
    let against = dir.to_str().unwrap();
    let folder = dir.join("identity.accounts").join("accounts");
    let finished = run(&mut outbox(
        "consumer",
        &["schemas", "check", "--against", against],
    ));
    assert_eq!(
        finished.success(),
        format!(
            "identity.accounts/accounts (`OldAccount`, versions [1]) against {}:\n\
             \x20 producer v1 read as v1: ok\n\
             \x20 producer v2 read as v1: ok; ignores locale\n\
             \x20 producer v3 read as v1: ok; takes defaults for legacy_flags; ignores locale, last_login\n",
            folder.display()
        )
    );

    // Without a default for the field version 3 drops: version 3 is not
    // readable, and the check fails naming the field.
    let finished = run(&mut outbox(
        "strict",
        &["schemas", "check", "--against", against],
    ));
    assert_eq!(
        finished.one_line_failure(),
        "error: schemas check: 1 producer version(s) cannot be read"
    );
    assert!(
        finished.stdout.ends_with(
            "  producer v2 read as v1: ok; ignores locale\n\
             \x20 producer v3 read as v1: NOT READABLE: field `legacy_flags`: the writer does \
             not send it and the reader has no default; ignores locale, last_login\n"
        ),
        "{}",
        finished.stdout
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_binary_without_models_says_how_to_name_them() {
    let finished = run(&mut outbox(
        "none",
        &["schemas", "export", "--dir", "/tmp/unused"],
    ));
    assert_eq!(
        finished.failure(2),
        "error: schemas: this binary names no models; embed the command line in your service's \
         binary with `outbox_diesel::cli::main_with(Schemas::new().produces::<M>()…)`"
    );
    let finished = run(&mut outbox(
        "consumer",
        &["schemas", "check", "--against", "/nonexistent/x"],
    ));
    assert!(
        finished
            .one_line_failure()
            .starts_with("error: schemas: /nonexistent/x/identity.accounts/accounts: No such file"),
        "{finished:?}"
    );
}

/// The models' subject on the test registry, deleted when the test ends.
fn registry_subject() -> (outbox_tests::TestRegistry, String) {
    let registry = outbox_tests::TestRegistry::new("cli_schemas");
    let subject = registry.value_subject("identity.accounts");
    (registry, subject)
}

fn on_registry(models: &str, registry: &outbox_tests::TestRegistry, args: &[&str]) -> Command {
    let mut command = outbox(models, args);
    command
        .env("SCHEMA_REGISTRY_URL", registry.url())
        .env_remove("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO");
    command
}

/// One test: the subject is the models' own (`identity.accounts-value`), so
/// its steps must not run beside each other.
#[test]
fn register_then_check_against_the_registry() {
    let (registry, subject) = registry_subject();
    registry
        .set_compatibility(&subject, "FULL_TRANSITIVE")
        .unwrap();

    let registered = run(&mut on_registry(
        "producer",
        &registry,
        &["schemas", "register"],
    ));
    let lines: Vec<&str> = registered.success().lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (line, version) in lines.iter().zip(1..) {
        assert!(
            line.starts_with(&format!(
                "identity.accounts-value: `Account` v{version} → id "
            )),
            "{line}"
        );
    }
    assert_eq!(registry.versions(&subject), [1, 2, 3]);
    // The release task again: the same ids, no new version.
    let again = run(&mut on_registry(
        "producer",
        &registry,
        &["schemas", "register"],
    ));
    assert_eq!(again.success(), registered.stdout);
    assert_eq!(registry.versions(&subject), [1, 2, 3]);

    let checked = run(&mut on_registry(
        "producer",
        &registry,
        &["schemas", "check"],
    ));
    assert_eq!(
        checked.success(),
        "identity.accounts-value: `Account` v3: compatible (FULL_TRANSITIVE)\n"
    );
    // A consumer built before versions 2 and 3 reads every registered version.
    let consumer = run(&mut on_registry(
        "consumer",
        &registry,
        &["schemas", "check"],
    ));
    let lines: Vec<&str> = consumer.success().lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (line, version) in lines.iter().zip(1..) {
        let head = format!(
            "identity.accounts-value: `OldAccount` v1 reads subject version {version} (id "
        );
        assert!(line.starts_with(&head) && line.contains("): ok"), "{line}");
    }

    // Another producer's version with a field no version of ours has, and no
    // default: under FULL_TRANSITIVE our v3 no longer fits (that version
    // could not read ours), and the check names the field.
    let mut theirs: serde_json::Value =
        serde_json::from_str(&registry.schema(registry_id(&registered.stdout, 3))).unwrap();
    theirs["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "region", "type": "string"}));
    registry.set_compatibility(&subject, "NONE").unwrap();
    registry.register(&subject, &theirs.to_string()).unwrap();
    registry
        .set_compatibility(&subject, "FULL_TRANSITIVE")
        .unwrap();
    let refused = run(&mut on_registry(
        "producer",
        &registry,
        &["schemas", "check"],
    ));
    assert_eq!(
        refused.one_line_failure(),
        "error: schemas check: 1 model(s) or version(s) do not fit the registry's"
    );
    assert_eq!(
        refused.stdout,
        "identity.accounts-value: `Account` v3: NOT compatible (FULL_TRANSITIVE): subject \
         version 4: field `region`: the writer does not send it and the reader has no default\n"
    );

    // A consumer without a default for the field version 3 dropped cannot
    // read version 3 (nor 4): named, exit 1.
    let strict = run(&mut on_registry("strict", &registry, &["schemas", "check"]));
    assert_eq!(
        strict.one_line_failure(),
        "error: schemas check: 2 model(s) or version(s) do not fit the registry's"
    );
    assert!(
        strict.stdout.contains(
            "`StrictOldAccount` v1 reads subject version 3 (id "
        ) && strict.stdout.contains(
            "NOT READABLE: field `legacy_flags`: the writer does not send it and the reader has no default"
        ),
        "{}",
        strict.stdout
    );
}

/// The id printed for version `version` by `schemas register`.
fn registry_id(printed: &str, version: u32) -> u32 {
    printed
        .lines()
        .nth(version as usize - 1)
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no id for v{version} in {printed}"))
}

#[test]
fn without_a_registry_url_the_commands_say_so() {
    let finished =
        run(outbox("producer", &["schemas", "register"]).env_remove("SCHEMA_REGISTRY_URL"));
    let line = finished.one_line_failure();
    assert!(line.starts_with("error: schemas: "), "{line}");
    assert!(line.contains("SCHEMA_REGISTRY_URL"), "{line}");
}
