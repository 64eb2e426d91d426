//! `#[derive(Outboxed)]` against plain serde, measured in the same run.
//!
//! - encode: the generated fast path (`write_payload`, what enqueue uses) against
//!   `serde_json::to_vec` of an equivalent `#[derive(Serialize)]` struct;
//! - decode: `from_payload` against the equivalent struct's `Deserialize`, both
//!   reading the same `serde_json::Value` (what a consumer has after decoding
//!   the envelope).
//!
//! - Avro (`#[outbox(avro)]`): the same model's `write_avro` against its JSON
//!   `write_payload`, and `read_avro` against reading its JSON from bytes
//!   (`serde_json::from_slice` to a `Value`, then `from_payload`), with the
//!   bytes per record of each. The aim: Avro no slower than JSON.
//!
//! Run: `cargo bench -p outbox-examples --bench payload`. Criterion measures
//! each of the four; then the ratios are taken from an interleaved run (serde,
//! outbox, serde, outbox, … `OUTBOX_BENCH_PAYLOAD_ROUNDS` rounds, 40 by
//! default), which a busy two-core machine disturbs far less than benchmarks
//! run one after the other (there, whichever of a pair runs second measures
//! 20–40 % slower). The figure is the median of the per-round ratios (the
//! fastest round's ratio is printed too, for comparison). Targets: encode ≤
//! 1.10×, decode ≤ 1.25×. With `OUTBOX_BENCH_RESULTS=<file>` the figures are
//! also appended to that file as JSON lines (`common/results.rs`), which
//! `bench-report` reads.

#[path = "common/results.rs"]
#[allow(dead_code)] // the reading side serves bench-report
mod results;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use criterion::Criterion;
use outbox::{Event, Outboxed};
use results::Figure;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Active,
    Suspended { reason: String },
}

/// The model as a service declares it.
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[diesel(table_name = accounts)]
#[outbox(topic = "accounts", versions = [1, 2], avro)]
struct Account {
    id: i64,
    #[outbox(rename(v1 = "mail", v2 = "email"))]
    email: String,
    display_name: Option<String>,
    #[outbox(with = chrono::serde::ts_milliseconds, avro_type = "timestamp-millis")]
    created_at: DateTime<Utc>,
    // serde's form of the enum: "active", or {"suspended": {"reason": ".."}}.
    #[outbox(avro_type = r#"["string", {"type": "map", "values": {"type": "record",
        "name": "Suspended", "fields": [{"name": "reason", "type": "string"}]}}]"#)]
    status: Status,
    #[outbox(since = 2, default)]
    preferences: Value,
    #[outbox(until = 1, default)]
    legacy_flags: u32,
    #[outbox(skip)]
    password_hash: String,
}

/// The same version-2 payload, written by hand with serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AccountV2Serde {
    id: i64,
    email: String,
    display_name: Option<String>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    created_at: DateTime<Utc>,
    status: Status,
    preferences: Value,
}

fn account() -> Account {
    Account {
        id: 4_242_424_242,
        email: "ada.lovelace@example.com".into(),
        display_name: Some("Ada Lovelace".into()),
        created_at: Utc.with_ymd_and_hms(2026, 11, 23, 16, 32, 7).unwrap(),
        status: Status::Suspended {
            reason: "chargeback on invoice 2026-11-0042".into(),
        },
        preferences: json!({"theme": "dark", "locale": "en-GB", "notify": {"email": true, "sms": false}}),
        legacy_flags: 3,
        password_hash: "argon2id$v=19$m=65536,t=3,p=4$…".into(),
    }
}

fn serde_twin(account: &Account) -> AccountV2Serde {
    AccountV2Serde {
        id: account.id,
        email: account.email.clone(),
        display_name: account.display_name.clone(),
        created_at: account.created_at,
        status: account.status.clone(),
        preferences: account.preferences.clone(),
    }
}

/// The four contenders, over the same data.
struct Cases {
    account: Account,
    twin: AccountV2Serde,
    payload: Value,
}

impl Cases {
    fn new() -> Self {
        let account = account();
        let twin = serde_twin(&account);
        // Both sides must produce the same JSON, or the comparison means nothing.
        let mut ours = Vec::new();
        account
            .write_payload(&Event::Updated, 2, &mut ours)
            .unwrap();
        let payload: Value = serde_json::from_slice(&ours).unwrap();
        assert_eq!(payload, serde_json::to_value(&twin).unwrap());
        Cases {
            account,
            twin,
            payload,
        }
    }

    fn encode_serde(&self) -> Vec<u8> {
        serde_json::to_vec(black_box(&self.twin)).unwrap()
    }

    fn encode_outbox(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128); // what serde_json::to_vec starts with
        black_box(&self.account)
            .write_payload(&Event::Updated, 2, &mut out)
            .unwrap();
        out
    }

    fn decode_serde(&self) -> AccountV2Serde {
        AccountV2Serde::deserialize(black_box(&self.payload)).unwrap()
    }

    fn decode_outbox(&self) -> Account {
        Account::from_payload(&Event::Updated, 2, black_box(&self.payload)).unwrap()
    }

    fn encode_avro(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        black_box(&self.account).write_avro(2, &mut out).unwrap();
        out
    }

    /// The JSON side of the Avro comparison: from the payload's bytes.
    fn decode_json_bytes(&self, json: &[u8]) -> Account {
        let payload: Value = serde_json::from_slice(black_box(json)).unwrap();
        Account::from_payload(&Event::Updated, 2, &payload).unwrap()
    }

    fn decode_avro(&self, datum: &[u8]) -> Account {
        Account::read_avro(2, black_box(datum)).unwrap()
    }
}

fn bench(c: &mut Criterion, cases: &Cases) {
    let mut encode = c.benchmark_group("encode");
    encode.bench_function("serde", |b| b.iter(|| cases.encode_serde()));
    encode.bench_function("outbox", |b| b.iter(|| cases.encode_outbox()));
    encode.finish();

    let mut decode = c.benchmark_group("decode");
    decode.bench_function("serde", |b| b.iter(|| cases.decode_serde()));
    decode.bench_function("outbox", |b| b.iter(|| cases.decode_outbox()));
    decode.finish();
}

/// Calls per round of an interleaved run.
const CALLS: u32 = 20_000;

/// Nanoseconds per call of `f`, over `CALLS` calls.
fn per_call(f: &dyn Fn()) -> f64 {
    let start = Instant::now();
    for _ in 0..CALLS {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(CALLS)
}

/// Nanoseconds per call of each of `sides` in each of `rounds` rounds, the
/// sides interleaved, each with one value per round.
fn interleave(rounds: usize, sides: [&dyn Fn(); 4]) -> [Vec<f64>; 4] {
    let mut times: [Vec<f64>; 4] = Default::default();
    for _ in 0..rounds {
        for (times, side) in times.iter_mut().zip(sides) {
            times.push(per_call(side));
        }
    }
    times
}

/// `[encode serde, encode outbox, decode serde, decode outbox]`, interleaved.
fn interleaved(cases: &Cases, rounds: usize) -> [Vec<f64>; 4] {
    interleave(
        rounds,
        [
            &|| drop(black_box(cases.encode_serde())),
            &|| drop(black_box(cases.encode_outbox())),
            &|| drop(black_box(cases.decode_serde())),
            &|| drop(black_box(cases.decode_outbox())),
        ],
    )
}

/// The Avro comparison, interleaved likewise: `[encode JSON, encode Avro,
/// decode JSON from bytes, decode Avro]`.
fn interleaved_avro(cases: &Cases, rounds: usize) -> [Vec<f64>; 4] {
    let (json, datum) = (cases.encode_outbox(), cases.encode_avro());
    interleave(
        rounds,
        [
            &|| drop(black_box(cases.encode_outbox())),
            &|| drop(black_box(cases.encode_avro())),
            &|| drop(black_box(cases.decode_json_bytes(&json))),
            &|| drop(black_box(cases.decode_avro(&datum))),
        ],
    )
}

/// Avro against JSON: both ways, and the bytes of each.
fn avro_figures(cases: &Cases, rounds: usize) {
    let (json, datum) = (cases.encode_outbox(), cases.encode_avro());
    assert_eq!(cases.decode_avro(&datum), cases.decode_json_bytes(&json));
    println!(
        "\nAvro against JSON, the same model and version, {rounds} interleaved rounds; bytes per record: \
         JSON {}, Avro {} (÷ JSON {:.2}; the registry's framing adds 5)",
        json.len(),
        datum.len(),
        datum.len() as f64 / json.len() as f64
    );
    Figure::new("payload", "bytes", "JSON", "bytes per record", "B")
        .value(json.len() as f64)
        .lower_is_better()
        .record();
    Figure::new("payload", "bytes", "Avro", "bytes per record", "B")
        .value(datum.len() as f64)
        .lower_is_better()
        .note(format!(
            "÷ JSON {:.2}",
            datum.len() as f64 / json.len() as f64
        ))
        .record();
    let [encode_json, encode_avro, decode_json, decode_avro] = interleaved_avro(cases, rounds);
    for (part, what, avro, json) in [
        (
            "avro encode",
            "encode (write_avro vs write_payload)",
            &encode_avro,
            &encode_json,
        ),
        (
            "avro decode",
            "decode from bytes (read_avro vs from_slice + from_payload)",
            &decode_avro,
            &decode_json,
        ),
    ] {
        Figure::new("payload", part, "JSON", "time per call", "ns")
            .rounds(json)
            .lower_is_better()
            .record();
        let figure = Figure::new("payload", part, "Avro", "time per call", "ns")
            .rounds(avro)
            .lower_is_better()
            .against("JSON", json)
            .target_at_most(1.0);
        println!(
            "  {what}: median of {rounds} paired ratios Avro ÷ JSON {:.3}; medians Avro {:.0} ns, JSON {:.0} ns",
            figure.ratio.unwrap_or(f64::NAN),
            figure.value,
            results::median(json)
        );
        figure.record();
    }
}

fn fastest(times: &[f64]) -> f64 {
    times.iter().copied().fold(f64::MAX, f64::min)
}

/// Criterion's estimate (the slope of time over iterations) of one benchmark, in ns.
fn criterion_ns(dir: &Path, group: &str, id: &str) -> Option<f64> {
    let path = dir.join(group).join(id).join("new").join("estimates.json");
    let estimates: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    estimates["slope"]["point_estimate"].as_f64()
}

fn main() {
    let cases = Cases::new();
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("criterion");
    let mut criterion = Criterion::default()
        .without_plots()
        .output_directory(&dir)
        .configure_from_args();
    bench(&mut criterion, &cases);
    criterion.final_summary();

    let rounds = std::env::var("OUTBOX_BENCH_PAYLOAD_ROUNDS")
        .ok()
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or(40usize)
        .max(1);
    let [encode_serde, encode_outbox, decode_serde, decode_outbox] = interleaved(&cases, rounds);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    println!("\nratios against serde, measured in this run (load average {load}):");
    for group in ["encode", "decode"] {
        if let (Some(serde), Some(ours)) = (
            criterion_ns(&dir, group, "serde"),
            criterion_ns(&dir, group, "outbox"),
        ) {
            let ratio = ours / serde;
            println!(
                "  {group}, criterion one after the other: outbox {ours:.0} ns, serde {serde:.0} ns, ratio {ratio:.3}"
            );
        }
    }
    for (part, what, ours, serde, target) in [
        (
            "encode",
            "encode (write_payload vs serde_json::to_vec)",
            &encode_outbox,
            &encode_serde,
            1.10,
        ),
        (
            "decode",
            "decode (from_payload vs Deserialize)",
            &decode_outbox,
            &decode_serde,
            1.25,
        ),
    ] {
        let (best_ours, best_serde) = (fastest(ours), fastest(serde));
        println!(
            "  {what}, interleaved, fastest of {rounds} rounds: outbox {best_ours:.0} ns, serde {best_serde:.0} ns, ratio {:.3}",
            best_ours / best_serde
        );
        Figure::new("payload", part, "serde", "time per call", "ns")
            .rounds(serde)
            .lower_is_better()
            .record();
        let figure = Figure::new("payload", part, "outbox", "time per call", "ns")
            .rounds(ours)
            .lower_is_better()
            .against("serde", serde)
            .target_at_most(target);
        let ratio = figure.ratio.unwrap_or(f64::NAN);
        let verdict = if figure.verdict() == Some(true) {
            "within"
        } else {
            "OVER"
        };
        println!(
            "  {what}, interleaved, median of {rounds} paired ratios: {ratio:.3} ({verdict} target {target:.2}); medians outbox {:.0} ns, serde {:.0} ns",
            figure.value,
            results::median(serde)
        );
        figure.record();
    }
    avro_figures(&cases, rounds);
}
