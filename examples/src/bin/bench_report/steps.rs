//! What a run measures: the benchmark processes it starts, in order, with
//! their arguments and settings for a full or a quick run.

/// One benchmark process: `cargo bench -p outbox-examples --bench <bench> -- <args>`
/// with `env` set (where the caller's environment does not set it already).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Step {
    /// The bench target: `payload`, `relay`, `consumer`.
    pub(crate) bench: &'static str,
    /// The part it runs, as the bench names it: `drain`, `enqueue`, … (the
    /// payload bench has one part, `encode/decode`).
    pub(crate) part: &'static str,
    /// What the progress line and the report call it: `relay drain batch 100`.
    pub(crate) name: String,
    /// The arguments after `--`.
    pub(crate) args: Vec<String>,
    /// The settings (`OUTBOX_BENCH_*`) it runs with.
    pub(crate) env: Vec<(String, String)>,
}

impl Step {
    fn new(bench: &'static str, part: &'static str, name: impl Into<String>) -> Self {
        Step {
            bench,
            part,
            name: name.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    fn env(mut self, name: &str, value: impl ToString) -> Self {
        self.env.push((name.into(), value.to_string()));
        self
    }

    /// Whether `--only <name>` selects this step: the bench (`relay`), the
    /// part (`enqueue`), or both (`relay-drain`, `relay:drain`, `relay drain`).
    ///
    /// ```ignore
    /// assert!(step.matches("enqueue"));
    /// ```
    pub(crate) fn matches(&self, name: &str) -> bool {
        let name = name.trim().to_lowercase();
        let both = |sep: &str| format!("{}{sep}{}", self.bench, self.part);
        name == self.bench
            || name == self.part
            || name == both("-")
            || name == both(":")
            || name == both(" ")
    }

    /// The command as a user would type it, for the report.
    pub(crate) fn command(&self) -> String {
        let mut command = String::new();
        for (name, value) in &self.env {
            command.push_str(&format!("{name}={value} "));
        }
        command.push_str(&format!(
            "cargo bench -p outbox-examples --bench {}",
            self.bench
        ));
        if !self.args.is_empty() {
            command.push_str(" -- ");
            command.push_str(&self.args.join(" "));
        }
        command
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// Small sizes, few rounds: a smoke run of a few minutes.
    pub(crate) quick: bool,
    /// Only the steps matching one of these names (all when empty).
    pub(crate) only: Vec<String>,
    /// The relay's batch sizes, one drain step each.
    pub(crate) batches: Vec<usize>,
}

/// The steps of `plan`, in the order they run.
///
/// ```ignore
/// let steps = steps(&Plan { quick: true, only: vec!["payload".into()], batches: vec![100] });
/// assert_eq!(steps[0].name, "payload encode/decode");
/// ```
pub(crate) fn steps(plan: &Plan) -> Vec<Step> {
    let quick = plan.quick;
    let mut all = Vec::new();

    let mut payload = Step::new("payload", "payload", "payload encode/decode")
        .env("OUTBOX_BENCH_PAYLOAD_ROUNDS", if quick { 10 } else { 40 });
    if quick {
        for arg in [
            "--warm-up-time",
            "0.5",
            "--measurement-time",
            "1",
            "--sample-size",
            "10",
        ] {
            payload = payload.arg(arg);
        }
    }
    all.push(payload);

    let relay = |part: &'static str, name: String| {
        let step = Step::new("relay", part, name).arg(part);
        if quick {
            step.env("OUTBOX_BENCH_ROWS", 20_000)
                .env("OUTBOX_BENCH_ROUNDS", 2)
                .env("OUTBOX_BENCH_LIVE_SECS", 5)
                .env("OUTBOX_BENCH_LATENCY_SECS", 5)
        } else {
            step.env("OUTBOX_BENCH_ROWS", 200_000)
                .env("OUTBOX_BENCH_ROUNDS", 3)
        }
    };
    for batch in &plan.batches {
        all.push(
            relay("drain", format!("relay drain batch {batch}")).env("OUTBOX_BENCH_BATCHES", batch),
        );
    }
    all.push(relay("memory", "relay memory".into()));
    all.push(relay("live", "relay live".into()));
    all.push(relay("enqueue", "relay enqueue (1 and 8 clients)".into()));
    all.push(relay("latency", "relay latency".into()));

    let consumer = |part: &'static str, name: &str| {
        let step = Step::new("consumer", part, name).arg(part);
        if quick {
            step.env("OUTBOX_BENCH_MESSAGES", 20_000)
                .env("OUTBOX_BENCH_ROUNDS", 2)
                .env("OUTBOX_BENCH_LIVE_SECS", 5)
                .env("OUTBOX_BENCH_LIVE_ROUNDS", 1)
        } else {
            step.env("OUTBOX_BENCH_MESSAGES", 200_000)
                .env("OUTBOX_BENCH_ROUNDS", 5)
        }
    };
    all.push(consumer("catchup", "consumer catch-up"));
    all.push(consumer("live", "consumer live"));

    if plan.only.is_empty() {
        return all;
    }
    all.into_iter()
        .filter(|step| plan.only.iter().any(|name| step.matches(name)))
        .collect()
}

/// The names `--only` accepts, for its error message.
pub(crate) const NAMES: &str = "payload, relay, consumer, drain, memory, live, enqueue, latency, catchup, or bench-part (relay-live, consumer-live)";

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(quick: bool, only: &[&str]) -> Plan {
        Plan {
            quick,
            only: only.iter().map(|s| s.to_string()).collect(),
            batches: vec![100, 1000],
        }
    }

    #[test]
    fn a_full_run_has_every_bench_and_a_drain_per_batch() {
        let steps = steps(&plan(false, &[]));
        let names: Vec<_> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "payload encode/decode",
                "relay drain batch 100",
                "relay drain batch 1000",
                "relay memory",
                "relay live",
                "relay enqueue (1 and 8 clients)",
                "relay latency",
                "consumer catch-up",
                "consumer live",
            ]
        );
        assert!(
            steps[1]
                .env
                .contains(&("OUTBOX_BENCH_BATCHES".into(), "100".into()))
        );
        assert_eq!(steps[1].args, ["drain"]);
    }

    #[test]
    fn only_selects_by_bench_part_or_both() {
        assert_eq!(steps(&plan(false, &["payload"])).len(), 1);
        assert_eq!(steps(&plan(false, &["relay"])).len(), 6);
        assert_eq!(steps(&plan(false, &["enqueue"])).len(), 1);
        assert_eq!(steps(&plan(false, &["live"])).len(), 2);
        assert_eq!(steps(&plan(false, &["consumer-live"])).len(), 1);
        assert_eq!(steps(&plan(false, &["nothing"])).len(), 0);
    }

    #[test]
    fn quick_is_small() {
        let steps = steps(&plan(true, &["drain", "payload"]));
        assert!(steps[0].args.contains(&"--measurement-time".to_string()));
        assert!(
            steps[1]
                .env
                .contains(&("OUTBOX_BENCH_ROWS".into(), "20000".into()))
        );
        assert_eq!(
            steps[1].command(),
            "OUTBOX_BENCH_ROWS=20000 OUTBOX_BENCH_ROUNDS=2 \
             OUTBOX_BENCH_LIVE_SECS=5 OUTBOX_BENCH_LATENCY_SECS=5 OUTBOX_BENCH_BATCHES=100 \
             cargo bench -p outbox-examples --bench relay -- drain"
        );
    }
}
