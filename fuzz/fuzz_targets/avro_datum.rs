//! A consumer reading a derived model's Avro datum from any bytes, in each of
//! its versions: `read_avro` returns the model or a typed error, never panics
//! nor allocates from a length the bytes cannot hold; a model it returns
//! writes a datum (`write_avro`) that reads back to the same model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outbox::{Error, Outboxed};
use outbox_fuzz::models::AvroAccount;

fuzz_target!(|data: &[u8]| {
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
            Err(Error::Avro { version: v, reason, .. }) => {
                assert_eq!(v, *version);
                assert!(!reason.is_empty());
            }
            Err(other) => panic!("not an Avro error: {other}"),
        }
    }
});
