//! A consumer reading a derived model's Avro datum from any bytes, in each of
//! its versions: `read_avro` returns the model or a typed error, never panics
//! nor allocates from a length the bytes cannot hold; a model it returns
//! writes a datum (`write_avro`) that reads back to the same model. Read
//! with a recursive writer's schema (its first field, which the reader
//! skips, a tree through a union, an array and a map) or shown as JSON, any
//! bytes are a model or an error too: never a stack overflow.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use outbox::avro::WriterSchema;
use outbox::{Error, Outboxed, Payloads};
use outbox_fuzz::models::AvroAccount;
use serde_json::{Value, json};

/// Per version, the model's schema with a recursive field first.
static RECURSIVE: LazyLock<Vec<(u32, Arc<WriterSchema>)>> = LazyLock::new(|| {
    let tree = json!({"name": "fuzz_tree", "type": {"type": "record", "name": "FuzzTree", "fields": [
        {"name": "next", "type": ["null", "FuzzTree"]},
        {"name": "kids", "type": {"type": "array", "items": "FuzzTree"}},
        {"name": "named", "type": {"type": "map", "values": ["FuzzTree", "long"]}}]}});
    AvroAccount::VERSIONS
        .iter()
        .map(|version| {
            let schema = AvroAccount::avro_schema(*version).expect("the model's schema");
            let mut schema: Value = serde_json::from_str(schema).expect("JSON");
            let fields = schema["fields"].as_array_mut().expect("a record's fields");
            fields.insert(0, tree.clone());
            let writer =
                WriterSchema::parse(&schema.to_string()).expect("a recursive schema parses");
            (*version, Arc::new(writer))
        })
        .collect()
});

fuzz_target!(|data: &[u8]| {
    for (version, writer) in RECURSIVE.iter() {
        match AvroAccount::read_avro_from(writer, *version, data) {
            Ok(_) | Err(Error::Avro { .. }) => {}
            Err(other) => panic!("not an Avro error: {other}"),
        }
        let mut payloads = Payloads::avro(*version, 1, data.to_vec()).expect("a payload");
        payloads.set_writer_schema(Arc::clone(writer));
        let _ = payloads.get(*version);
    }
    for version in AvroAccount::VERSIONS {
        match AvroAccount::read_avro(*version, data) {
            Ok(model) => {
                let mut datum = Vec::new();
                model
                    .write_avro(*version, &mut datum)
                    .expect("a model read from a datum writes one");
                let again = AvroAccount::read_avro(*version, &datum).expect("its own datum reads");
                // NaN is not equal to itself: compare the datums then.
                if model.score.is_nan() {
                    let mut twice = Vec::new();
                    again.write_avro(*version, &mut twice).expect("writes");
                    assert_eq!(twice, datum);
                } else {
                    assert_eq!(again, model);
                }
            }
            Err(Error::Avro {
                version: v, reason, ..
            }) => {
                assert_eq!(v, *version);
                assert!(!reason.is_empty());
            }
            Err(other) => panic!("not an Avro error: {other}"),
        }
    }
});
