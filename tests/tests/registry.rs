//! The schemas `#[derive(Outboxed)]` generates, against a real
//! Confluent-compatible schema registry (the Apicurio Registry of
//! `scripts/services.sh up`, or `SCHEMA_REGISTRY_URL`): every version of a
//! model registers on one subject under `FULL_TRANSITIVE`, and the registry
//! refuses what would break a reader.

use std::collections::BTreeSet;
use std::process::Command;

use outbox::Outboxed;
use outbox_tests::TestRegistry;
use outbox_tests::registry::{DEFAULT_SCHEMA_REGISTRY_URL, schema_registry_url};
use serde_json::{Value, json};

fn default_locale() -> String {
    "en".to_owned()
}

/// A profile over three versions: a rename (`name` in version 1), a field
/// added in version 2 with a default, one dropped after version 2 with a
/// default, and an `Option`.
#[derive(Outboxed)]
#[allow(dead_code)]
#[outbox(topic = "registry.profiles", route = "profiles", versions = [1, 2, 3], avro)]
struct Profile {
    id: i64,
    #[outbox(rename(v1 = "name"))]
    display_name: String,
    nickname: Option<String>,
    #[outbox(since = 2, default = default_locale)]
    locale: String,
    #[outbox(until = 2, default)]
    karma: i32,
}

/// The same record (Avro resolves records by name) from a producer that
/// added `region` without a default: a reader of this schema cannot read a
/// message written without it.
#[derive(Outboxed)]
#[allow(dead_code)]
#[outbox(
    topic = "registry.profiles",
    route = "profiles_with_region",
    versions = [1, 2, 3],
    avro(name = "Profile")
)]
struct ProfileWithRegion {
    id: i64,
    #[outbox(rename(v1 = "name"))]
    display_name: String,
    nickname: Option<String>,
    #[outbox(since = 2, default = default_locale)]
    locale: String,
    #[outbox(until = 2, default)]
    karma: i32,
    region: String,
}

fn avro<M: Outboxed>(version: u32) -> &'static str {
    M::avro_schema(version).unwrap_or_else(|e| panic!("version {version}: {e}"))
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A subject of the test's own at `FULL_TRANSITIVE`, holding `versions` of
/// `Profile`, in order.
fn subject_with(registry: &TestRegistry, versions: &[u32]) -> String {
    let subject = registry.subject("profiles");
    registry
        .set_compatibility(&subject, "FULL_TRANSITIVE")
        .unwrap();
    for version in versions {
        registry
            .register(&subject, avro::<Profile>(*version))
            .unwrap_or_else(|failure| panic!("version {version} refused: {failure}"));
    }
    subject
}

#[test]
fn every_version_registers_in_order_under_full_transitive() {
    let registry = TestRegistry::new("every_version_registers");
    let subject = subject_with(&registry, &[]);
    assert_eq!(
        registry.compatibility(&subject).as_deref(),
        Ok("FULL_TRANSITIVE")
    );
    let mut ids = Vec::new();
    for version in Profile::VERSIONS {
        let id = registry
            .register(&subject, avro::<Profile>(*version))
            .unwrap_or_else(|failure| panic!("version {version} refused: {failure}"));
        ids.push(id);
        // Payload version n is the subject's version n.
        let expected: Vec<u32> = (1..=*version).collect();
        assert_eq!(registry.versions(&subject), expected);
    }
    let distinct: BTreeSet<u32> = ids.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        ids.len(),
        "each version is a schema of its own: {ids:?}"
    );

    for (version, id) in Profile::VERSIONS.iter().zip(&ids) {
        // The same text again: the same id, and no new version.
        let again = registry.register(&subject, avro::<Profile>(*version));
        assert_eq!(again, Ok(*id), "version {version} registered again");
        // What the registry gives back is what was registered.
        assert_eq!(
            parsed(&registry.schema(*id)),
            parsed(avro::<Profile>(*version)),
            "schema {id} (version {version})"
        );
    }
    assert_eq!(registry.versions(&subject), [1, 2, 3]);
}

#[test]
fn a_field_without_a_default_is_refused_with_409() {
    let registry = TestRegistry::new("field_without_default");
    let subject = subject_with(&registry, &[1, 2]);
    let next = avro::<Profile>(3);
    let incompatible = avro::<ProfileWithRegion>(3);
    assert!(registry.check(&subject, next).unwrap(), "{next}");
    assert!(!registry.check(&subject, incompatible).unwrap());

    let failure = registry.register(&subject, incompatible).unwrap_err();
    assert_eq!(failure.status, 409, "{failure}");
    assert_eq!(failure.error_code, Some(409), "{failure}");
    assert!(failure.message.contains("region"), "{failure}");
    assert_eq!(registry.versions(&subject), [1, 2], "nothing was added");

    // The same field with a default is compatible: the default was what was missing.
    let mut with_default = parsed(incompatible);
    let fields = with_default["fields"].as_array_mut().unwrap();
    let region = fields.iter_mut().find(|f| f["name"] == "region").unwrap();
    assert_eq!(*region, json!({"name": "region", "type": "string"}));
    region["default"] = json!("");
    assert!(
        registry
            .check_all(&subject, &with_default.to_string())
            .unwrap()
    );

    // The refusal left the subject as it was: the model's next version registers.
    registry.register(&subject, next).unwrap();
    assert_eq!(registry.versions(&subject), [1, 2, 3]);
}

#[test]
fn the_default_of_a_later_field_keeps_the_first_version_readable() {
    let registry = TestRegistry::new("later_field_default");
    let subject = subject_with(&registry, &[1, 2]);
    // Version 3 without `locale`'s default: it reads version 2's messages
    // (they carry `locale`), not version 1's.
    let mut without_default = parsed(avro::<Profile>(3));
    let fields = without_default["fields"].as_array_mut().unwrap();
    let locale = fields.iter_mut().find(|f| f["name"] == "locale").unwrap();
    assert_eq!(locale["default"], "en");
    locale.as_object_mut().unwrap().remove("default");
    let without_default = without_default.to_string();

    // `check` compares with the latest version only, whatever the level;
    // registering (and `check_all`) compares with every version at a
    // `_TRANSITIVE` level.
    assert!(registry.check(&subject, &without_default).unwrap());
    assert!(!registry.check_all(&subject, &without_default).unwrap());
    let failure = registry.register(&subject, &without_default).unwrap_err();
    assert_eq!(failure.status, 409, "{failure}");
    assert!(failure.message.contains("locale"), "{failure}");
    assert!(registry.check_all(&subject, avro::<Profile>(3)).unwrap());
}

#[test]
fn subjects_are_deleted_for_good_when_the_registry_is_dropped() {
    let registry = TestRegistry::new("subjects_deleted");
    let subject = subject_with(&registry, &[1]);
    let configured_only = registry.subject("configured_only");
    registry
        .set_compatibility(&configured_only, "BACKWARD")
        .unwrap();
    assert!(registry.subjects(false).contains(&subject));
    drop(registry);

    let after = TestRegistry::new("subjects_deleted_after");
    // Not even soft-deleted: gone.
    assert!(!after.subjects(true).contains(&subject), "{subject}");
    // Nor is the level set on a subject that never had a version.
    for gone in [&subject, &configured_only] {
        let failure = after.compatibility(gone).unwrap_err();
        assert_eq!(failure.status, 404, "{gone}: {failure}");
    }
}

#[test]
fn the_registry_is_the_one_schema_registry_url_names() {
    let registry = TestRegistry::new("registry_url");
    match std::env::var("SCHEMA_REGISTRY_URL") {
        Ok(url) if !url.trim().is_empty() => {
            assert_eq!(registry.url(), url.trim().trim_end_matches('/'));
        }
        _ => assert_eq!(registry.url(), DEFAULT_SCHEMA_REGISTRY_URL),
    }
    assert_eq!(registry.url(), schema_registry_url());
    // A final `/` is the same registry.
    let slashed = TestRegistry::on_url(format!("{}/", registry.url()), "registry_url_slash");
    assert_eq!(slashed.url(), registry.url());
}

/// `scripts/services.sh up --only registry` with `SCHEMA_REGISTRY_URL`
/// set: `(exit status, stdout, stderr)`.
fn services_up_given(url: &str) -> (bool, String, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services.sh");
    let output = Command::new("bash")
        .args([script, "up", "--only", "registry"])
        .env("SCHEMA_REGISTRY_URL", url)
        .output()
        .unwrap_or_else(|e| panic!("could not run {script}: {e}"));
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    (
        output.status.success(),
        text(output.stdout),
        text(output.stderr),
    )
}

#[test]
fn the_services_script_uses_a_given_registry_when_it_answers() {
    let registry = TestRegistry::new("script_adopts");
    let (ok, stdout, stderr) = services_up_given(registry.url());
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(
        stdout,
        format!("SCHEMA_REGISTRY_URL={} (given)\n", registry.url())
    );

    let dead = "http://127.0.0.1:1/apis/ccompat/v7";
    let (ok, stdout, stderr) = services_up_given(dead);
    assert!(!ok, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("SCHEMA_REGISTRY_URL={dead} does not answer")),
        "{stderr}"
    );
}
