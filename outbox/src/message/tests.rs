use super::*;
use proptest::prelude::*;
use serde_json::json;

fn sample() -> Message {
    let mut payloads = Payloads::new(1, json!({"id": 42, "mail": "a@example.com"})).unwrap();
    payloads
        .insert(
            2,
            json!({"id": 42, "email": "a@example.com", "locale": "fr"}),
        )
        .unwrap();
    Message::new(
        Event::Created,
        "accounts",
        "users",
        "accounts",
        "42",
        payloads,
    )
    .expect("a valid topic")
}

fn decode_encoded(topic: &str, record: &EncodedMessage) -> Result<Message, DecodeError> {
    let headers = record
        .headers
        .iter()
        .map(|(name, value)| (*name, Some(value.as_bytes())));
    Message::decode(topic, Some(&record.key), headers, Some(&record.value))
}

/// Decodes `record` with one header replaced (or removed when `value` is `None`).
fn decode_with_header(record: &EncodedMessage, name: &str, value: Option<&str>) -> DecodeError {
    let mut headers: Vec<(&str, Option<&[u8]>)> = record
        .headers
        .iter()
        .filter(|(n, _)| *n != name)
        .map(|(n, v)| (*n, Some(v.as_bytes())))
        .collect();
    if let Some(value) = value {
        headers.push((name, Some(value.as_bytes())));
    }
    Message::decode("t", Some(&record.key), headers, Some(&record.value)).unwrap_err()
}

fn decode_with_value(record: &EncodedMessage, value: &[u8]) -> DecodeError {
    let headers = record
        .headers
        .iter()
        .map(|(name, v)| (*name, Some(v.as_bytes())));
    Message::decode("t", Some(&record.key), headers, Some(value)).unwrap_err()
}

fn with_envelope_field(record: &EncodedMessage, field: &str, value: Value) -> Vec<u8> {
    let mut envelope: Map<String, Value> = serde_json::from_slice(&record.value).unwrap();
    if value.is_null() {
        envelope.remove(field);
    } else {
        envelope.insert(field.to_owned(), value);
    }
    serde_json::to_vec(&envelope).unwrap()
}

#[test]
fn wire_format_is_as_designed() {
    let mut message = sample();
    message.trace = Some(
        TraceContext::new(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("congo=t61rcWkgMzE"),
        )
        .unwrap(),
    );
    message.occurred_at = "2026-11-23T16:32:07.123456789Z".parse().unwrap();
    let record = message.encode();
    assert_eq!(record.key, b"42");
    let names: Vec<&str> = record.headers.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "message_id",
            "event",
            "from",
            "to",
            "versions",
            "content-type",
            "occurred_at",
            "traceparent",
            "tracestate"
        ]
    );
    let header = |name: &str| {
        record
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("versions"), Some("1,2"));
    assert_eq!(header("content-type"), Some("application/json"));
    assert_eq!(
        header("occurred_at"),
        Some("2026-11-23T16:32:07.123456789Z")
    );
    let value: Value = serde_json::from_slice(&record.value).unwrap();
    assert_eq!(
        value,
        json!({
            "message_id": message.id.to_string(),
            "event": "created",
            "from": "accounts",
            "to": "users",
            "partition_key": "42",
            "occurred_at": "2026-11-23T16:32:07.123456789Z",
            "payloads": {
                "1": {"id": 42, "mail": "a@example.com"},
                "2": {"id": 42, "email": "a@example.com", "locale": "fr"}
            }
        })
    );
    // The envelope keeps the documented field order.
    let text = String::from_utf8(record.value.clone()).unwrap();
    let order: Vec<usize> = [
        "\"message_id\"",
        "\"event\"",
        "\"from\"",
        "\"to\"",
        "\"partition_key\"",
        "\"occurred_at\"",
        "\"payloads\"",
    ]
    .iter()
    .map(|f| text.find(f).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert_eq!(decode_encoded("accounts", &record).unwrap(), message);
}

#[test]
fn unknown_headers_are_ignored() {
    let message = sample();
    let record = message.encode();
    let mut headers: Vec<(&str, Option<&[u8]>)> = record
        .headers
        .iter()
        .map(|(n, v)| (*n, Some(v.as_bytes())))
        .collect();
    headers.insert(0, ("x-connect-origin", Some(&[0xff, 0xfe])));
    headers.push(("x-null", None));
    let decoded =
        Message::decode("accounts", Some(&record.key), headers, Some(&record.value)).unwrap();
    assert_eq!(decoded, message);
}

#[test]
fn from_and_to_must_be_names() {
    let record = sample().encode();
    let err = decode_with_header(&record, "from", Some("acc\0ounts"));
    assert_eq!(
        err.to_string(),
        "header `from` has an invalid value \"acc\\0ounts\": it contains the control character '\\0'"
    );
    let err = decode_with_header(&record, "to", Some(""));
    assert!(
        matches!(err, DecodeError::InvalidHeader { name: "to", .. }),
        "{err}"
    );
}

#[test]
fn content_type_parameters_are_accepted() {
    let record = sample().encode();
    let mut headers: Vec<(&str, Option<&[u8]>)> = record
        .headers
        .iter()
        .filter(|(n, _)| *n != "content-type")
        .map(|(n, v)| (*n, Some(v.as_bytes())))
        .collect();
    headers.push(("content-type", Some(b"Application/JSON; charset=utf-8")));
    assert!(Message::decode("t", Some(&record.key), headers, Some(&record.value)).is_ok());
}

fn avro_sample() -> Message {
    // A record {id: long, email: string} of version 2: id 21 (zig-zag 42), "ab".
    let payloads = Payloads::avro(2, 7, b"\x2a\x04ab".to_vec()).unwrap();
    Message::new(
        Event::Updated,
        "accounts",
        "users",
        "accounts",
        "21",
        payloads,
    )
    .unwrap()
}

const AVRO_SAMPLE_SCHEMA: &str = r#"{"type":"record","name":"User","fields":[
    {"name":"id","type":"long"},{"name":"email","type":"string"}]}"#;

#[test]
fn avro_values_are_a_frame_and_the_headers_say_the_rest() {
    let message = avro_sample();
    let record = message.encode();
    assert_eq!(record.value, b"\x00\x00\x00\x00\x07\x2a\x04ab");
    assert_eq!(record.avro_schema, None);
    let header = |name: &str| {
        let found = record.headers.iter().find(|(n, _)| *n == name);
        found.map(|(_, v)| v.as_str())
    };
    assert_eq!(header(headers::CONTENT_TYPE), Some(CONTENT_TYPE_AVRO));
    assert_eq!(header(headers::VERSIONS), Some("2"));
    assert_eq!(header(headers::TO), Some("users"));

    let mut decoded = decode_encoded("accounts", &record).unwrap();
    assert_eq!(decoded, message);
    assert_eq!(decoded.payloads.format(), Format::Avro);
    assert_eq!(decoded.payloads.avro_schema_id(), Some(7));
    assert_eq!(decoded.payloads.avro_datum(), Some(&b"\x2a\x04ab"[..]));

    // Unreadable until the writer's schema is attached, and said so.
    assert_eq!(decoded.payloads.get(2), None);
    let err = decoded.payload_for(&[1, 2]).unwrap_err();
    assert!(matches!(err, Error::NoWriterSchema { id: 7 }), "{err}");
    let writer = crate::avro::WriterSchema::parse(AVRO_SAMPLE_SCHEMA).unwrap();
    decoded
        .payloads
        .set_writer_schema(std::sync::Arc::new(writer));
    let json = json!({"id": 21, "email": "ab"});
    assert_eq!(decoded.payload_for(&[1, 2]).unwrap(), (2, &json));
    assert_eq!(decoded.payloads.iter().collect::<Vec<_>>(), [(2, &json)]);

    let mut payloads = decoded.payloads.clone();
    let err = payloads.insert(1, json!({})).unwrap_err();
    assert!(matches!(err, Error::AvroPayloads { version: 2 }), "{err}");
}

#[test]
fn avro_records_are_checked_by_name() {
    let record = avro_sample().encode();
    let err = decode_with_header(&record, headers::VERSIONS, Some("1,2"));
    assert!(
        err.to_string()
            .contains("an Avro value is a datum of one version"),
        "{err}"
    );
    for (value, says) in [
        (&b"\x00\x01"[..], "2 bytes"),
        (b"{\"message_id\":1}", "first byte is 123"),
        (b"\x00\x00\x00\x00\x00\x2a", "schema id 0"),
    ] {
        let err = decode_with_value(&record, value);
        assert!(matches!(err, DecodeError::InvalidAvroFrame { .. }), "{err}");
        assert!(err.to_string().contains(says), "{err}");
    }
    // A JSON envelope under an Avro content type, and the reverse.
    let json = sample().encode();
    let err = decode_with_value(&record, &json.value);
    assert!(matches!(err, DecodeError::InvalidAvroFrame { .. }), "{err}");
    let err = decode_with_header(&json, headers::CONTENT_TYPE, Some("application/xml"));
    assert!(err.to_string().contains("`application/avro`"), "{err}");
}

#[test]
fn errors_name_what_is_wrong() {
    let record = sample().encode();

    let err = Message::decode("t", None, [], Some(&record.value)).unwrap_err();
    assert_eq!(err, DecodeError::MissingKey);
    let err = Message::decode("t", Some(&[0xc3, 0x28]), [], None).unwrap_err();
    assert!(matches!(err, DecodeError::KeyNotUtf8 { .. }), "{err}");

    let headers = record.headers.iter().map(|(n, v)| (*n, Some(v.as_bytes())));
    let err = Message::decode("t", Some(&record.key), headers, None).unwrap_err();
    assert_eq!(err, DecodeError::MissingValue);

    for name in KNOWN_HEADERS.iter().take(7) {
        let err = decode_with_header(&record, name, None);
        assert_eq!(err.to_string(), format!("header `{name}` is missing"));
    }

    let err = decode_with_header(&record, "message_id", Some("nope"));
    assert_eq!(
        err.to_string(),
        "header `message_id` has an invalid value \"nope\": not a hyphenated UUID (failed to parse a UUID)"
    );
    let err = decode_with_header(&record, "event", Some("Created!"));
    assert!(
        err.to_string()
            .starts_with("header `event` has an invalid value \"Created!\": character 'C'"),
        "{err}"
    );
    let err = decode_with_header(&record, "occurred_at", Some("yesterday"));
    assert!(
        err.to_string()
            .starts_with("header `occurred_at` has an invalid value \"yesterday\""),
        "{err}"
    );
    let err = decode_with_header(&record, "versions", Some("2,1"));
    assert!(err.to_string().contains("ascending and unique"), "{err}");
    let err = decode_with_header(&record, "versions", Some("1,x"));
    assert!(
        err.to_string().contains("\"x\": expected a version number"),
        "{err}"
    );
    let err = decode_with_header(&record, "versions", Some("0,1"));
    assert!(
        err.to_string().contains("\"0\": versions start at 1"),
        "{err}"
    );
    // The reason does not repeat the value, and a huge value stays short.
    let huge = format!("1,{}", "9".repeat(100_000));
    let err = decode_with_header(&record, "versions", Some(&huge));
    assert!(err.to_string().len() < 400, "{err}");
    assert_eq!(err.to_string().matches("1,999").count(), 1, "{err}");
    let err = decode_with_header(&record, "versions", Some("1"));
    assert_eq!(
        err.to_string(),
        "header `versions` is \"1\" but the envelope says \"1,2\""
    );
    let err = decode_with_header(&record, "content-type", Some("application/x-protobuf"));
    assert_eq!(
        err.to_string(),
        "unsupported content type \"application/x-protobuf\": expected `application/json` \
         or `application/avro`"
    );
    let err = decode_with_header(&record, "traceparent", Some("00-zz"));
    assert!(
        err.to_string()
            .starts_with("header `traceparent` has an invalid value \"00-zz\""),
        "{err}"
    );
    let err = decode_with_header(&record, "to", Some("orders"));
    assert_eq!(
        err.to_string(),
        "header `to` is \"orders\" but the envelope says \"users\""
    );

    let mut headers: Vec<(&str, Option<&[u8]>)> = record
        .headers
        .iter()
        .map(|(n, v)| (*n, Some(v.as_bytes())))
        .collect();
    headers.push(("event", Some(b"updated")));
    let err = Message::decode("t", Some(&record.key), headers, Some(&record.value)).unwrap_err();
    assert_eq!(err.to_string(), "header `event` appears more than once");

    let mut headers: Vec<(&str, Option<&[u8]>)> = record
        .headers
        .iter()
        .filter(|(n, _)| *n != "from")
        .map(|(n, v)| (*n, Some(v.as_bytes())))
        .collect();
    headers.push(("from", Some(&[0xff])));
    let err = Message::decode("t", Some(&record.key), headers, Some(&record.value)).unwrap_err();
    assert!(
        matches!(err, DecodeError::HeaderNotUtf8 { name: "from", .. }),
        "{err}"
    );

    let err = Message::decode(
        "t",
        Some(b"43"),
        record.headers.iter().map(|(n, v)| (*n, Some(v.as_bytes()))),
        Some(&record.value),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "record key is \"43\" but the envelope's `partition_key` is \"42\""
    );

    let mut headers: Vec<(&str, Option<&[u8]>)> = record
        .headers
        .iter()
        .filter(|(n, _)| *n != "event")
        .map(|(n, v)| (*n, Some(v.as_bytes())))
        .collect();
    headers.push(("event", None));
    let err = Message::decode("t", Some(&record.key), headers, Some(&record.value)).unwrap_err();
    assert_eq!(err.to_string(), "header `event` has no value");

    let err = decode_with_header(&record, "occurred_at", Some("yesterday"));
    assert_eq!(err.to_string().matches("yesterday").count(), 1, "{err}");
}

#[test]
fn envelope_errors_name_the_field() {
    let record = sample().encode();

    let err = decode_with_value(&record, b"{\"message_id\": ");
    assert!(
        err.to_string()
            .starts_with("record value is not a JSON envelope: EOF while parsing"),
        "{err}"
    );
    let err = decode_with_value(&record, b"[1, 2]");
    assert!(
        err.to_string().starts_with(
            "record value is not a JSON envelope: expected a JSON object, found an array"
        ),
        "{err}"
    );
    for field in [
        "message_id",
        "event",
        "from",
        "to",
        "partition_key",
        "occurred_at",
        "payloads",
    ] {
        let value = with_envelope_field(&record, field, Value::Null);
        let err = decode_with_value(&record, &value);
        assert_eq!(
            err.to_string(),
            format!("envelope field `{field}` is missing")
        );
    }
    let value = with_envelope_field(&record, "from", json!(7));
    assert_eq!(
        decode_with_value(&record, &value).to_string(),
        "envelope field `from` has an invalid value \"7\": expected a string, found a number"
    );
    let value = with_envelope_field(&record, "payloads", json!([]));
    assert!(
        decode_with_value(&record, &value)
            .to_string()
            .contains("expected an object, found an array")
    );
    let value = with_envelope_field(&record, "payloads", json!({}));
    assert!(
        decode_with_value(&record, &value)
            .to_string()
            .contains("at least one payload")
    );
    let value = with_envelope_field(&record, "payloads", json!({"01": {}, "2": {}}));
    assert_eq!(
        decode_with_value(&record, &value).to_string(),
        "envelope field `payloads.01` has an invalid value \"01\": expected a version number (1, 2, …)"
    );
    let huge_version = "7".repeat(100_000);
    let value = with_envelope_field(&record, "payloads", json!({ huge_version: {} }));
    let err = decode_with_value(&record, &value).to_string();
    assert!(err.len() < 400, "{err}");
    let value = with_envelope_field(&record, "event", json!("updated"));
    assert_eq!(
        decode_with_value(&record, &value).to_string(),
        "header `event` is \"created\" but the envelope says \"updated\""
    );
    let huge = format!("{{\"x\": \"{}", "y".repeat(10_000));
    let err = decode_with_value(&record, huge.as_bytes()).to_string();
    assert!(err.len() < 400 && err.contains("(10007 bytes)"), "{err}");
}

#[test]
fn highest_common_version_prefers_the_newest_shared() {
    let message = sample();
    assert_eq!(message.highest_common_version(&[1]).unwrap(), 1);
    assert_eq!(message.highest_common_version(&[2, 1]).unwrap(), 2);
    assert_eq!(message.highest_common_version(&[1, 2, 3]).unwrap(), 2);
    let err = message.highest_common_version(&[3, 4]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no common payload version: the message carries [1, 2], the reader knows [3, 4]"
    );
    let (version, payload) = message.payload_for(&[1]).unwrap();
    assert_eq!((version, &payload["mail"]), (1, &json!("a@example.com")));
}

// ---------------------------------------------------------------- properties

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        Just(Event::Created),
        Just(Event::Updated),
        Just(Event::Destroyed),
        "[a-z0-9_.-]{1,128}".prop_filter_map("lifecycle name", |name| match Event::parse(&name) {
            Ok(event @ Event::Custom(_)) => Some(event),
            _ => None,
        }),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e15f64..1e15).prop_map(Value::from),
        ".*".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(".*", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_payloads() -> impl Strategy<Value = Payloads> {
    prop_oneof![
        prop::collection::btree_map(1u32.., arb_json(), 1..4)
            .prop_map(|map| Payloads(super::Inner::Json(map))),
        (1u32.., 1u32.., prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(version, id, datum)| Payloads::avro(version, id, datum).unwrap()),
    ]
}

fn arb_trace() -> impl Strategy<Value = Option<TraceContext>> {
    let parent = (
        "[0-9a-f]{31}[1-9a-f]",
        "[0-9a-f]{15}[1-9a-f]",
        "[0-9a-f]{2}",
    )
        .prop_map(|(trace, span, flags)| format!("00-{trace}-{span}-{flags}"));
    prop::option::of((parent, prop::option::of("[ -~]{0,40}"))).prop_map(|trace| {
        trace.map(|(parent, state)| TraceContext::new(&parent, state.as_deref()).unwrap())
    })
}

prop_compose! {
    fn arb_message()(
        event in arb_event(),
        // `from` and `to` are names: not empty, no control characters.
        from in "[^\\p{Cc}]{1,40}",
        to in "[^\\p{Cc}]{1,40}",
        topic in "[a-zA-Z0-9._-]{1,40}",
        partition_key in ".*",
        // 1970..2200, to the nanosecond.
        secs in 0i64..7_258_118_400,
        nanos in 0u32..1_000_000_000,
        payloads in arb_payloads(),
        trace in arb_trace(),
    ) -> Message {
        Message {
            id: MessageId::new(),
            event,
            from,
            to,
            topic,
            partition_key,
            occurred_at: DateTime::from_timestamp(secs, nanos).unwrap(),
            payloads,
            trace,
        }
    }
}

fn arb_header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(KNOWN_HEADERS.to_vec()).prop_map(str::to_owned),
        ".{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_identity(message in arb_message()) {
        let record = message.encode();
        let decoded = decode_encoded(&message.topic, &record).unwrap();
        prop_assert_eq!(decoded, message);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(
        key in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        headers in prop::collection::vec(
            (arb_header_name(), prop::option::of(prop::collection::vec(any::<u8>(), 0..64))),
            0..12,
        ),
        value in prop::option::of(prop::collection::vec(any::<u8>(), 0..256)),
    ) {
        let headers = headers.iter().map(|(n, v)| (n.as_str(), v.as_deref()));
        // Random bytes are never a valid message (the envelope needs a JSON object
        // with seven fields that agree with seven headers).
        prop_assert!(Message::decode("t", key.as_deref(), headers, value.as_deref()).is_err());
    }

    /// Valid records with one header or envelope field replaced by garbage decode
    /// to an error, or (when the garbage happens to be valid and agree) to a message.
    #[test]
    fn decode_of_corrupted_records_never_panics(
        message in arb_message(),
        header in prop::sample::select(KNOWN_HEADERS.to_vec()),
        header_value in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        field in prop::sample::select(vec!["message_id", "event", "from", "to", "partition_key", "occurred_at", "payloads"]),
        field_value in arb_json(),
    ) {
        let record = message.encode();
        let corrupted_value = if message.payloads.format() == Format::Json {
            with_envelope_field(&record, field, field_value)
        } else {
            // An Avro value has no envelope: cut its frame short instead.
            record.value[..record.value.len().min(field.len())].to_vec()
        };
        let headers = record.headers.iter()
            .filter(|(n, _)| *n != header)
            .map(|(n, v)| (*n, Some(v.as_bytes())))
            .chain(header_value.as_deref().map(|v| (header, Some(v))));
        let _ = Message::decode(&message.topic, Some(&record.key), headers, Some(&corrupted_value));
    }
}

#[test]
fn topic_names_follow_kafkas_rule() {
    for good in [
        "accounts",
        "billing.invoices-v2",
        "A_b.c-1",
        &"a".repeat(249),
        "...",
    ] {
        assert!(Message::check_topic(good).is_ok(), "{good:?}");
    }
    let reason = |topic: &str| match Message::check_topic(topic) {
        Err(Error::InvalidTopic { reason, .. }) => reason,
        other => panic!("{topic:?}: {other:?}"),
    };
    assert_eq!(reason(""), "is empty");
    assert_eq!(
        reason("."),
        "Kafka does not allow `.` or `..` as a topic name"
    );
    assert_eq!(
        reason(".."),
        "Kafka does not allow `.` or `..` as a topic name"
    );
    assert_eq!(
        reason(&"a".repeat(250)),
        "is 250 characters long; Kafka allows 249"
    );
    assert!(reason("accounts/eu").starts_with("contains '/'"));
    assert!(reason("comptes-é").starts_with("contains 'é'"));
    let payloads = Payloads::new(1, json!({"id": 1})).unwrap();
    let error = Message::new(Event::Created, "a", "users", "user accounts", "1", payloads)
        .expect_err("a space is refused");
    assert_eq!(
        error.to_string(),
        "invalid topic name \"user accounts\": contains ' '; Kafka topic names use only ASCII \
         letters, digits, `.`, `_` and `-`"
    );
}
