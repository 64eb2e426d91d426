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
