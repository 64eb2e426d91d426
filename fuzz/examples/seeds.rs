//! Writes the seed corpus (`fuzz/corpus/<target>/`) from real encoded messages,
//! real payloads and the attributes the macros' documentation shows.
//!
//! `cargo +nightly run --manifest-path fuzz/Cargo.toml --example seeds`
//! (`scripts/fuzz.sh --seeds` runs it). Rewrites only the `seed-*` files.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use outbox::{Event, Message, MessageId, Outboxed, Payloads, TraceContext};
use outbox_fuzz::input::{MacroInput, PayloadInput, RawRecord, RawRow};
use outbox_fuzz::models::{Account, AccountV1, OrderLine, Product, Status};
use outbox_fuzz::pg_array::headers_column;
use outbox_fuzz::tokens::{WRAP_LITERALS, WRAP_VALUES};
use serde_json::json;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let messages = messages();

    let mut records: Vec<RawRecord> = messages
        .iter()
        .map(|m| RawRecord::from_encoded(&m.topic, &m.encode()))
        .collect();
    // Records a consumer meets that no producer of ours writes.
    let base = records[0].clone();
    let mut unknown = base.clone();
    unknown
        .headers
        .insert(0, ("x-origin".into(), Some(vec![0xff, 0xfe])));
    unknown.headers.push(("x-null".into(), None));
    let mut duplicate = base.clone();
    duplicate
        .headers
        .push(("event".into(), Some(b"updated".to_vec())));
    let mut bad_key = base.clone();
    bad_key.key = Some(vec![0xc3, 0x28]);
    let mut tombstone = base.clone();
    tombstone.value = None;
    records.extend([unknown, duplicate, bad_key, tombstone]);
    write_all(
        &root.join("record_decode"),
        records.iter().map(RawRecord::write),
    );

    let rows = messages.iter().map(|m| {
        let encoded = m.encode();
        RawRow {
            partition_key: m.partition_key.clone(),
            headers_column: headers_column(&encoded.headers),
            payload: encoded.value,
        }
    });
    let empty = RawRow {
        partition_key: "1".into(),
        headers_column: headers_column::<&str, &str>(&[]),
        payload: b"{}".to_vec(),
    };
    write_all(
        &root.join("relay_row"),
        rows.chain([empty]).map(|row| row.write()),
    );

    write_all(&root.join("outboxed_payload"), payloads());
    write_all(&root.join("derive_attrs"), derive_attrs());
    write_all(&root.join("controller_attrs"), controller_attrs());
}

fn account() -> Account {
    Account {
        id: 42,
        email: "ada@example.com".into(),
        display_name: Some("Ada".into()),
        created_at: Utc.with_ymd_and_hms(2026, 11, 23, 16, 32, 7).unwrap(),
        status: Status::Suspended {
            reason: "chargeback".into(),
        },
        preferences: json!({"theme": "dark", "notify": {"email": true, "sms": false}}),
        legacy_flags: 3,
        password_hash: "argon2id$…".into(),
    }
}

fn product() -> Product {
    Product {
        id: 7,
        sku: "SKU-7/ß".into(),
        price_cents: -1250,
        nickname: Some("seven".into()),
        locale: "fr".into(),
        weight: 0.125,
        tags: vec!["a".into(), "b\u{0}c".into()],
        legacy: Some(9),
        dims: (1, 2, 65535),
        cache: "x".into(),
    }
}

fn order_line() -> OrderLine {
    OrderLine {
        order_id: 7,
        line: -3,
        sku: "X-1".into(),
        quantity: u32::MAX,
    }
}

fn messages() -> Vec<Message> {
    let at = Utc.with_ymd_and_hms(2026, 11, 23, 16, 32, 7).unwrap()
        + chrono::Duration::nanoseconds(123_456_789);
    let trace = TraceContext::new(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        Some("congo=t61rcWkgMzE"),
    )
    .unwrap();
    let mut out = Vec::new();
    // The enqueue path: encode_model, as outbox-diesel stores rows.
    let account = account();
    for event in [Event::Created, Event::Destroyed] {
        let record =
            Message::encode_model(&account, &event, "accounts", id(), at, Some(&trace)).unwrap();
        out.push(decode(Account::TOPIC, &record));
    }
    let record = Message::encode_model(
        &product(),
        &Event::custom("price_changed").unwrap(),
        "catalog",
        id(),
        at,
        None,
    )
    .unwrap();
    out.push(decode(Product::TOPIC, &record));
    let record =
        Message::encode_model(&order_line(), &Event::Updated, "orders", id(), at, None).unwrap();
    out.push(decode(OrderLine::TOPIC, &record));
    // Message::new: a key in another script, a payload that is not an object.
    let payloads = Payloads::new(3, json!(["x", 1.5e300, null])).unwrap();
    let mut message =
        Message::new(Event::Updated, "svc", "ключи", "t", "ключ-🔑", payloads).unwrap();
    message.id = id();
    message.occurred_at = Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 59).unwrap();
    out.push(message);
    out
}

/// A fixed id, so the seeds are the same on every run.
fn id() -> MessageId {
    MessageId::parse("01936f0e-5c3a-7b2e-9f1d-3c4b5a697887").unwrap()
}

fn decode(topic: &str, record: &outbox::EncodedMessage) -> Message {
    let headers = record.headers.iter().map(|(n, v)| (*n, Some(v.as_bytes())));
    Message::decode(topic, Some(&record.key), headers, Some(&record.value)).unwrap()
}

fn payloads() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let events = [Event::Created, Event::Updated, Event::Destroyed];
    let mut add =
        |model: u8, versions: &[u32], payload: &dyn Fn(&Event, u32) -> serde_json::Value| {
            for (e, event) in events.iter().enumerate() {
                for version in versions {
                    let mask = versions.iter().fold(0u8, |m, v| m | 1 << (v - 1));
                    out.push(
                        PayloadInput {
                            model,
                            event: e as u8,
                            versions: mask,
                            json: serde_json::to_vec(&payload(event, *version)).unwrap(),
                        }
                        .write(),
                    );
                }
            }
        };
    let account = account();
    add(0, Account::VERSIONS, &|e, v| {
        account.to_payload(e, v).unwrap()
    });
    // The older consumer reading what the newer producer wrote.
    add(1, Account::VERSIONS, &|e, v| {
        account.to_payload(e, v).unwrap()
    });
    let line = order_line();
    add(2, OrderLine::VERSIONS, &|e, v| {
        line.to_payload(e, v).unwrap()
    });
    let product = product();
    add(3, Product::VERSIONS, &|e, v| {
        product.to_payload(e, v).unwrap()
    });
    let _ = AccountV1::VERSIONS;
    out
}

fn macro_seeds(parts: &[&[&str]]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, parts) in parts.iter().enumerate() {
        // Each plain; the valid ones also as macro_rules! fragments would pass them.
        let flags: &[u8] = if i < 4 {
            &[0, WRAP_LITERALS, WRAP_VALUES, WRAP_LITERALS | WRAP_VALUES]
        } else {
            &[0]
        };
        for flags in flags {
            out.push(
                MacroInput {
                    flags: *flags,
                    parts: parts.iter().map(|p| (*p).to_owned()).collect(),
                }
                .write(),
            );
        }
    }
    out
}

/// Parts: struct `#[outbox]`, `id`'s `#[outbox]`, `email`'s `#[outbox]`, `#[diesel]`.
fn derive_attrs() -> Vec<Vec<u8>> {
    macro_seeds(&[
        &[
            r#"topic = "accounts", versions = [1, 2]"#,
            "",
            r#"rename(v1 = "mail", v2 = "email")"#,
            "table_name = crate::schema::users",
        ],
        &[
            r#"topic = "orders", route = "lines", destroyed = "full", partition_key = email"#,
            "since = 2, until = 3, default",
            r#"rename = "emailAddress", rename(v1 = "mail")"#,
            "table_name = lines, primary_key(id, email), treat_none_as_null = true",
        ],
        &[
            r#"crate = events, topic = "a.b-c_d", route = "users", payload_with = user_payload, versions = [1, 2, 3]"#,
            "default = crate::default_id",
            "with = chrono::serde::ts_seconds, since = 3",
            "",
        ],
        &[
            r#"topic = "accounts", route = "users", partition_key_with = tenant_key, destroyed = "keys""#,
            "",
            "skip",
            "",
        ],
        // Mistakes the derive reports, each at its tokens.
        &[
            "topic = 1, versions = [2, 1, 0]",
            "rename(v3 = \"x\")",
            "since = 9",
            "",
        ],
        &[
            r#"topik = "a", route = """#,
            "skip, skip",
            "defualt",
            "table_name = 1",
        ],
        &[
            r#"topic = "a b", versions = [], destroyed = "some""#,
            "with",
            "until = 0",
            "primary_key()",
        ],
        &[
            "topic = \"a\", topic = \"b\", crate = \"x\"",
            "= 1",
            "rename(v1 = 1)",
            "",
        ],
    ])
}

/// Parts: the macro's arguments, the `#[on]` of `password_reset`.
fn controller_attrs() -> Vec<Vec<u8>> {
    macro_seeds(&[
        &["model = User, table = users", r#""password_reset""#],
        &[
            r#"model = "crate::models::User", table = crate::schema::users, route = "users", topic = "accounts", strict"#,
            r#""password_reset", "password_forgotten""#,
        ],
        &["model = User<'static, Vec<u8>>, table = users", ""],
        &[
            "model = <User as Trait>::Assoc, table = self::users, strict",
            r#""a.b-c""#,
        ],
        // Mistakes the macro reports.
        &["model = , table = 1, strict = true", "password_reset"],
        &["modle = User, tabel = users, route = \"\"", r#""Created""#],
        &["", ""],
        &[
            r#"model = User, table = users, topic = "a b", model = User"#,
            r#""x", "x""#,
        ],
    ])
}

fn write_all(dir: &Path, seeds: impl IntoIterator<Item = Vec<u8>>) {
    fs::create_dir_all(dir).unwrap();
    for old in fs::read_dir(dir).unwrap() {
        let path = old.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("seed-")
        {
            fs::remove_file(path).unwrap();
        }
    }
    let mut count = 0;
    for (i, seed) in seeds.into_iter().enumerate() {
        fs::write(dir.join(format!("seed-{i:03}")), seed).unwrap();
        count += 1;
    }
    println!("{}: {count} seeds", dir.display());
}
