//! `#[derive(Outboxed)]` as a user sees it: payload shapes per version and event,
//! round trips, an older consumer reading a newer producer, and the errors.

use chrono::{DateTime, TimeZone, Utc};
use outbox::{Error, Event, Message, Outboxed, Payloads};
use proptest::prelude::*;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Active,
    Suspended { reason: String },
}

/// The producer's model: a realistic account row.
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[diesel(table_name = crate::schema::accounts)]
#[outbox(topic = "accounts", versions = [1, 2])]
struct Account {
    id: i64,
    #[outbox(rename(v1 = "mail", v2 = "email"))]
    email: String,
    display_name: Option<String>,
    #[outbox(with = chrono::serde::ts_milliseconds)]
    created_at: DateTime<Utc>,
    status: Status,
    #[outbox(since = 2, default)]
    preferences: Value,
    #[outbox(until = 1, default)]
    legacy_flags: u32,
    #[outbox(skip)]
    password_hash: String,
}

/// A consumer on an older release: it knows only version 1.
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "accounts", route = "accounts", versions = [1])]
struct AccountV1 {
    id: i64,
    #[outbox(rename = "mail")]
    email: String,
    display_name: Option<String>,
    #[outbox(with = chrono::serde::ts_milliseconds)]
    created_at: DateTime<Utc>,
    status: Status,
    legacy_flags: u32,
}

mod schema {
    diesel::table! {
        accounts (id) {
            id -> BigInt,
        }
    }
}

/// A composite key, sent in full on destroy.
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[diesel(table_name = order_lines, primary_key(order_id, line))]
#[outbox(topic = "orders", destroyed = "full")]
struct OrderLine {
    order_id: i64,
    line: i16,
    sku: String,
    quantity: u32,
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

fn events() -> Vec<Event> {
    vec![
        Event::Created,
        Event::Updated,
        Event::Destroyed,
        Event::custom("password_reset").unwrap(),
    ]
}

#[test]
fn constants_come_from_the_attributes() {
    assert_eq!(Account::TOPIC, "accounts");
    assert_eq!(Account::ROUTE, "accounts"); // Diesel's table_name, last segment
    assert_eq!(Account::VERSIONS, &[1, 2]);
    assert_eq!(account().partition_key(), "42");
    assert_eq!(AccountV1::VERSIONS, &[1]);
    assert_eq!(OrderLine::ROUTE, "order_lines");
    let line = OrderLine {
        order_id: 7,
        line: 3,
        sku: "X-1".into(),
        quantity: 2,
    };
    assert_eq!(line.partition_key(), "7:3");
}

#[test]
fn payload_shapes_are_pinned_per_version_and_event() {
    let account = account();
    for version in Account::VERSIONS {
        for event in events() {
            let payload = account.to_payload(&event, *version).unwrap();
            insta::assert_json_snapshot!(format!("account_v{version}_{event}"), payload);
        }
    }
    let line = OrderLine {
        order_id: 7,
        line: 3,
        sku: "X-1".into(),
        quantity: 2,
    };
    insta::assert_json_snapshot!(
        "order_line_v1_destroyed",
        line.to_payload(&Event::Destroyed, 1).unwrap()
    );
    // The fast path's bytes, which also pin the field order (declaration order).
    let mut bytes = Vec::new();
    account
        .write_payload(&Event::Created, 2, &mut bytes)
        .unwrap();
    insta::assert_snapshot!(
        "account_v2_created_bytes",
        String::from_utf8(bytes).unwrap()
    );
}

#[test]
fn fast_path_writes_the_same_json() {
    let account = account();
    for version in Account::VERSIONS {
        for event in events() {
            let mut out = b"prefix".to_vec();
            account.write_payload(&event, *version, &mut out).unwrap();
            assert_eq!(&out[..6], b"prefix", "appends, keeps what was there");
            let written: Value = serde_json::from_slice(&out[6..]).unwrap();
            assert_eq!(written, account.to_payload(&event, *version).unwrap());
        }
    }
}

#[test]
fn older_consumer_reads_the_highest_version_it_knows() {
    let account = account();
    let mut payloads = Payloads::new(1, account.to_payload(&Event::Updated, 1).unwrap()).unwrap();
    payloads
        .insert(2, account.to_payload(&Event::Updated, 2).unwrap())
        .unwrap();
    let message = Message::new(
        Event::Updated,
        "accounts",
        Account::ROUTE,
        Account::TOPIC,
        account.partition_key(),
        payloads,
    )
    .expect("a valid topic");
    // Through the wire format, as a consumer gets it.
    let record = message.encode();
    let headers = record.headers.iter().map(|(n, v)| (*n, Some(v.as_bytes())));
    let received =
        Message::decode("accounts", Some(&record.key), headers, Some(&record.value)).unwrap();

    let (version, payload) = received.payload_for(AccountV1::VERSIONS).unwrap();
    assert_eq!(version, 1);
    let read = AccountV1::from_payload(&received.event, version, payload).unwrap();
    assert_eq!(
        read,
        AccountV1 {
            id: 42,
            email: "ada@example.com".into(),
            display_name: Some("Ada".into()),
            created_at: account.created_at,
            status: account.status.clone(),
            legacy_flags: 3,
        }
    );
    // The producer's own model reads version 2, and fills what v2 lacks from defaults.
    let (version, payload) = received.payload_for(Account::VERSIONS).unwrap();
    assert_eq!(version, 2);
    let back = Account::from_payload(&received.event, version, payload).unwrap();
    assert_eq!(
        back,
        Account {
            legacy_flags: 0,
            password_hash: String::new(),
            ..account
        }
    );
}

#[test]
fn missing_field_error_names_field_and_version() {
    let mut payload = account().to_payload(&Event::Created, 2).unwrap();
    payload.as_object_mut().unwrap().remove("email");
    let err = Account::from_payload(&Event::Created, 2, &payload).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Payload {
                model: "Account",
                version: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "invalid `Account` payload (version 2, event `created`): missing field `email`"
    );

    let mut payload = account().to_payload(&Event::Created, 1).unwrap();
    payload["id"] = json!("forty-two");
    let err = Account::from_payload(&Event::Created, 1, &payload).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `Account` payload (version 1, event `created`): field `id`: invalid type: string \"forty-two\", expected i64"
    );

    // Nested values are named by their path.
    let mut payload = account().to_payload(&Event::Created, 2).unwrap();
    payload["status"] = json!({"suspended": {"reason": 7}});
    let err = Account::from_payload(&Event::Created, 2, &payload).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `Account` payload (version 2, event `created`): field `status.suspended.reason`: invalid type: integer `7`, expected a string"
    );

    // A payload that is not an object is refused as such (serde would read an array by position).
    for (payload, kind) in [
        (json!([42, "a@example.com"]), "an array"),
        (json!(null), "null"),
    ] {
        let err = Account::from_payload(&Event::Created, 1, &payload).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "invalid `Account` payload (version 1, event `created`): expected a JSON object, found {kind}"
            )
        );
    }

    // A huge bad value does not make a huge error.
    let mut payload = account().to_payload(&Event::Created, 1).unwrap();
    payload["id"] = json!("x".repeat(1_000_000));
    let err = Account::from_payload(&Event::Created, 1, &payload)
        .unwrap_err()
        .to_string();
    assert!(err.len() < 500 && err.ends_with("(1000049 bytes)"), "{err}");
}

#[test]
fn serializer_errors_name_the_field() {
    #[derive(Outboxed)]
    #[outbox(topic = "counters", route = "counters")]
    struct Counter {
        id: i64,
        total: u128,
    }
    let counter = Counter {
        id: 1,
        total: u128::MAX,
    };
    // A `Value` cannot hold a u128 this large; the bytes can.
    let err = counter.to_payload(&Event::Created, 1).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Serialize {
                model: "Counter",
                version: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("number out of range"), "{err}");
    let mut out = Vec::new();
    counter.write_payload(&Event::Created, 1, &mut out).unwrap();

    #[derive(Outboxed)]
    #[outbox(topic = "files", route = "files")]
    struct File {
        id: i64,
        #[outbox(with = refuse)]
        body: Vec<u8>,
    }
    mod refuse {
        pub(super) fn serialize<S: serde::Serializer>(_: &[u8], _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("bodies are not sent"))
        }
        pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
            _: D,
        ) -> Result<Vec<u8>, D::Error> {
            Ok(Vec::new())
        }
    }
    let file = File {
        id: 1,
        body: vec![1],
    };
    let err = file
        .write_payload(&Event::Created, 1, &mut Vec::new())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not serialize `File` (version 1, event `created`): field `body`: bodies are not sent"
    );
}

#[test]
fn default_paths_may_name_the_model_with_self() {
    #[derive(Debug, Outboxed)]
    #[outbox(topic = "accounts", route = "users", versions = [1, 2])]
    struct User {
        id: i64,
        #[outbox(since = 2, default = Self::default_locale)]
        locale: String,
    }
    impl User {
        fn default_locale() -> String {
            "en".into()
        }
    }
    let user = User::from_payload(&Event::Created, 1, &json!({"id": 1})).unwrap();
    assert_eq!(user.locale, "en");
    // Also when a version that carries the field finds it missing.
    let user = User::from_payload(&Event::Created, 2, &json!({"id": 1})).unwrap();
    assert_eq!(user.locale, "en");
}

#[test]
fn unknown_version_and_keys_only_destroy_are_typed_errors() {
    let account = account();
    let err = account.to_payload(&Event::Created, 3).unwrap_err();
    assert!(matches!(
        err,
        Error::UnknownVersion {
            model: "Account",
            version: 3,
            supported: &[1, 2]
        }
    ));
    assert_eq!(
        err.to_string(),
        "`Account` has no payload version 3; it declares [1, 2]"
    );
    assert!(matches!(
        account.write_payload(&Event::Created, 0, &mut Vec::new()),
        Err(Error::UnknownVersion { version: 0, .. })
    ));
    assert!(matches!(
        Account::from_payload(&Event::Created, 9, &json!({})),
        Err(Error::UnknownVersion { version: 9, .. })
    ));
    assert!(matches!(
        Account::key_from_payload(9, &json!({})),
        Err(Error::UnknownVersion { version: 9, .. })
    ));

    let destroyed = account.to_payload(&Event::Destroyed, 2).unwrap();
    assert_eq!(destroyed, json!({"id": 42}));
    assert_eq!(Account::key_from_payload(2, &destroyed).unwrap(), 42);
    let err = Account::from_payload(&Event::Destroyed, 2, &destroyed).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedEvent {
                model: "Account",
                ..
            }
        ),
        "{err:?}"
    );

    let err = Account::key_from_payload(1, &json!({"mail": "x"})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `Account` payload (version 1, event `destroyed`): missing field `id`"
    );
}

#[test]
fn composite_keys_and_full_destroyed_payloads() {
    let line = OrderLine {
        order_id: 7,
        line: 3,
        sku: "X-1".into(),
        quantity: 2,
    };
    let payload = line.to_payload(&Event::Destroyed, 1).unwrap();
    assert_eq!(OrderLine::key_from_payload(1, &payload).unwrap(), (7, 3));
    assert_eq!(
        OrderLine::from_payload(&Event::Destroyed, 1, &payload).unwrap(),
        line
    );
}

#[test]
fn version_without_a_field_and_no_default_is_an_error_when_read() {
    // `since` without a default is refused at compile time (ui case
    // `since-without-default`); a field dropped with `until` is read back
    // from the later versions only with a default.
    #[derive(Debug, Outboxed)]
    #[outbox(topic = "accounts", route = "users", versions = [1, 2])]
    struct User {
        id: i64,
        #[outbox(until = 1)]
        locale: String,
    }
    let user = User {
        id: 1,
        locale: "fr".into(),
    };
    let v2 = user.to_payload(&Event::Created, 2).unwrap();
    assert_eq!(v2, json!({"id": 1}));
    let err = User::from_payload(&Event::Created, 2, &v2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `User` payload (version 2, event `created`): version 2 does not carry field `locale`, and the field has no `#[outbox(default)]`"
    );
    let v1 = user.to_payload(&Event::Created, 1).unwrap();
    assert_eq!(
        User::from_payload(&Event::Created, 1, &v1).unwrap().locale,
        "fr"
    );
}

// ---------------------------------------------------------------- properties

fn arb_status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Active),
        ".*".prop_map(|reason| Status::Suspended { reason }),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        ".*".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 16, 4, |inner| {
        prop::collection::btree_map("[a-z]{1,8}", inner, 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    })
}

prop_compose! {
    fn arb_account()(
        id in any::<i64>(),
        email in ".*",
        display_name in prop::option::of(".*"),
        millis in -62_135_596_800_000i64..253_402_300_799_000,
        status in arb_status(),
        preferences in arb_json(),
        legacy_flags in any::<u32>(),
        password_hash in ".*",
    ) -> Account {
        Account {
            id,
            email,
            display_name,
            created_at: DateTime::from_timestamp_millis(millis).unwrap(),
            status,
            preferences,
            legacy_flags,
            password_hash,
        }
    }
}

proptest! {
    #[test]
    fn from_payload_inverts_to_payload_in_every_version(account in arb_account()) {
        for &version in Account::VERSIONS {
            for event in [Event::Created, Event::Updated, Event::custom("renamed").unwrap()] {
                let payload = account.to_payload(&event, version).unwrap();
                let back = Account::from_payload(&event, version, &payload).unwrap();
                // What the version does not carry comes back as its default.
                let expected = Account {
                    preferences: if version >= 2 { account.preferences.clone() } else { Value::Null },
                    legacy_flags: if version <= 1 { account.legacy_flags } else { 0 },
                    password_hash: String::new(),
                    ..account.clone()
                };
                prop_assert_eq!(back, expected);

                let mut fast = Vec::new();
                account.write_payload(&event, version, &mut fast).unwrap();
                prop_assert_eq!(serde_json::from_slice::<Value>(&fast).unwrap(), payload);
            }
            let destroyed = account.to_payload(&Event::Destroyed, version).unwrap();
            prop_assert_eq!(Account::key_from_payload(version, &destroyed).unwrap(), account.id);
        }
    }
}

#[test]
fn raw_identifiers_string_paths_and_optional_timestamps() {
    #[derive(Debug, PartialEq, Outboxed)]
    #[diesel(table_name = "events")]
    #[outbox(topic = "audit", partition_key = "r#type", versions = [1, 2,])]
    struct AuditEvent {
        id: uuid::Uuid,
        r#type: String,
        #[outbox(with = "chrono::serde::ts_seconds_option")]
        seen_at: Option<DateTime<Utc>>,
        #[outbox(rename(v2 = "r#ref"))]
        r#ref: Option<i64>,
    }
    let event = AuditEvent {
        id: uuid::Uuid::nil(),
        r#type: "login".into(),
        seen_at: None,
        r#ref: Some(7),
    };
    assert_eq!(AuditEvent::ROUTE, "events");
    assert_eq!(event.partition_key(), "login");
    let v1 = event.to_payload(&Event::Created, 1).unwrap();
    assert_eq!(
        v1,
        json!({"id": "00000000-0000-0000-0000-000000000000", "type": "login", "seen_at": null, "ref": 7})
    );
    assert_eq!(event.to_payload(&Event::Created, 2).unwrap()["r#ref"], 7);
    assert_eq!(
        AuditEvent::from_payload(&Event::Created, 1, &v1).unwrap(),
        event
    );
    // An optional field the payload leaves out reads as None.
    let sparse =
        json!({"id": "00000000-0000-0000-0000-000000000000", "type": "login", "seen_at": null});
    assert_eq!(
        AuditEvent::from_payload(&Event::Created, 1, &sparse)
            .unwrap()
            .r#ref,
        None
    );
    assert_eq!(
        AuditEvent::key_from_payload(1, &event.to_payload(&Event::Destroyed, 1).unwrap()).unwrap(),
        uuid::Uuid::nil()
    );
}
