//! `benchmarks.md`: the machine and run, the ratios against their targets,
//! each benchmark's charts and table, and the steps that produced nothing
//! with the reason.

use serde::{Deserialize, Serialize};

use crate::charts::{Chart, ratio_label};
use crate::format::{cell, number, ratio};
use crate::machine::Machine;
use crate::results::Figure;
use crate::run::Outcome;

/// The folder beside `benchmarks.md` that holds the charts and the raw figures.
pub(crate) const ASSETS: &str = "benchmarks";

/// Everything about a run but its figures; kept as `benchmarks/run.json` so
/// that `--from` can draw the report again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub(crate) struct RunInfo {
    pub(crate) machine: Machine,
    /// `full` or `quick`.
    pub(crate) mode: String,
    /// The command line that made it.
    pub(crate) command: String,
    /// Wall-clock seconds of the whole run (building included).
    pub(crate) secs: f64,
    pub(crate) load_start: Vec<f64>,
    pub(crate) load_end: Vec<f64>,
    /// Each step, in order.
    pub(crate) outcomes: Vec<Outcome>,
}

fn load(load: &[f64]) -> String {
    if load.is_empty() {
        "n/a".into()
    } else {
        load.iter()
            .map(|l| format!("{l:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn load_1(f: &Figure) -> String {
    f.load.first().map_or("n/a".into(), |l| format!("{l:.2}"))
}

fn rounds(f: &Figure) -> String {
    let finite: Vec<f64> = f.rounds.iter().copied().filter(|v| v.is_finite()).collect();
    match finite.len() {
        0 | 1 => "1".into(),
        n => {
            let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
            let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{n}: {}–{}", number(min), number(max))
        }
    }
}

fn verdict(f: &Figure) -> &'static str {
    match f.verdict() {
        Some(true) => "**met**",
        Some(false) => "**missed**",
        None => "",
    }
}

/// The Markdown report. `charts` are the charts written beside it, under
/// `benchmarks/`; `ratios_chart` whether `benchmarks/ratios.svg` was.
///
/// ```ignore
/// let md = markdown(&info, &figures, &charts::charts(&figures), true);
/// std::fs::write("docs/benchmarks.md", md)?;
/// ```
pub(crate) fn markdown(
    info: &RunInfo,
    figures: &[Figure],
    charts: &[Chart],
    ratios_chart: bool,
) -> String {
    let mut md = String::new();
    let m = &info.machine;
    md.push_str("# Benchmarks\n\n");
    md.push_str(
        "<!-- Written by `cargo run -p outbox-examples --release --bin bench-report`; \
         do not edit by hand: run it again. -->\n\n",
    );
    if m.cpu.is_empty() {
        md.push_str(
            "The machine and the run were not recorded with these figures (no `run.json`).\n\n",
        );
    } else {
        md.push_str(&format!(
            "Measured on **{}**, {}, commit `{}`: a {} run (`{}`) of {} \
             (load average 1/5/15 min at the start {}, at the end {}).\n\n",
            m.describe(),
            m.date,
            m.commit,
            info.mode,
            info.command,
            crate::run::elapsed(std::time::Duration::from_secs_f64(info.secs.max(0.0))),
            load(&info.load_start),
            load(&info.load_end),
        ));
    }
    if info.mode == "quick" {
        md.push_str(
            "**A quick run**: small sizes and few rounds, a smoke test of the report; \
             not figures to publish.\n\n",
        );
    }
    md.push_str(
        "How to read it: the sides of a comparison run in the same process, in \
         interleaved rounds, against PostgreSQL and Kafka on the same machine. A \
         figure's *value* is the median of its rounds; its *ratio* is the median of \
         the per-round ratios side ÷ baseline (never the best round). *Rounds* gives \
         their number and range; *load* is the 1-minute load average when the figure \
         was recorded: a load above the core count means other work shared the \
         machine. On the charts a bar is the median and each dot a round. Every \
         number here comes from [`benchmarks/results.jsonl`](benchmarks/results.jsonl), \
         the figures the benchmarks recorded in this run.\n\n",
    );

    let with_ratio: Vec<&Figure> = figures
        .iter()
        .filter(|f| f.ratio.is_some_and(f64::is_finite))
        .collect();
    if !with_ratio.is_empty() {
        md.push_str("## Ratios and targets\n\n");
        if ratios_chart {
            md.push_str(&format!(
                "![median paired ratios against their targets]({ASSETS}/ratios.svg)\n\n"
            ));
        }
        md.push_str("| comparison | median ratio | target | | rounds | load |\n");
        md.push_str("|---|---:|---|---|---:|---:|\n");
        for f in &with_ratio {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                cell(&ratio_label(f)),
                ratio(f.ratio.unwrap_or(f64::NAN)),
                f.target.map_or(String::new(), |t| t.label()),
                verdict(f),
                f.ratio_rounds.len(),
                load_1(f),
            ));
        }
        md.push('\n');
    }

    let mut benches: Vec<&str> = Vec::new();
    for f in figures {
        if !benches.contains(&f.bench.as_str()) {
            benches.push(&f.bench);
        }
    }
    for bench in benches {
        md.push_str(&format!("## {bench}\n\n"));
        for chart in charts.iter().filter(|c| c.bench_part().0 == bench) {
            md.push_str(&format!(
                "![{}]({ASSETS}/{})\n\n",
                cell(&chart.title),
                chart.file
            ));
        }
        md.push_str(
            "| part | case | side | metric | value | rounds | baseline | ratio | target | | load |\n",
        );
        md.push_str("|---|---|---|---|---:|---:|---|---:|---|---|---:|\n");
        for f in figures.iter().filter(|f| f.bench == bench) {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} {} | {} | {} | {} | {} | {} | {} |\n",
                cell(&f.part),
                cell(&f.case),
                cell(&f.side),
                cell(&f.metric),
                number(f.value),
                cell(&f.unit),
                rounds(f),
                cell(f.baseline.as_deref().unwrap_or("")),
                f.ratio.map_or(String::new(), ratio),
                f.target.map_or(String::new(), |t| t.label()),
                verdict(f),
                load_1(f),
            ));
        }
        let notes: Vec<&Figure> = figures
            .iter()
            .filter(|f| f.bench == bench && !f.note.is_empty())
            .collect();
        if !notes.is_empty() {
            md.push('\n');
            for f in notes {
                md.push_str(&format!(
                    "- {} {} {} {}: {}\n",
                    f.part, f.case, f.side, f.metric, f.note
                ));
            }
        }
        md.push('\n');
    }

    let missing: Vec<&Outcome> = info
        .outcomes
        .iter()
        .filter(|o| o.missing_reason().is_some())
        .collect();
    if !missing.is_empty() {
        md.push_str("## Not measured\n\n");
        for o in missing {
            md.push_str(&format!(
                "- **{}** (`{}`): {}; full output in `{}`.\n",
                o.name,
                o.command,
                o.missing_reason().unwrap_or_default(),
                o.log
            ));
            if !o.stderr_tail.is_empty() {
                md.push_str("  Its last lines on stderr:\n\n  ```text\n");
                for line in &o.stderr_tail {
                    md.push_str(&format!("  {line}\n"));
                }
                md.push_str("  ```\n");
            }
        }
        md.push('\n');
    }
    let bad: Vec<&Outcome> = info
        .outcomes
        .iter()
        .filter(|o| !o.bad_lines.is_empty())
        .collect();
    if !bad.is_empty() {
        md.push_str("Lines of the results that were not figures (left out):\n\n");
        for o in bad {
            for line in &o.bad_lines {
                md.push_str(&format!("- {}: {}\n", o.name, cell(line)));
            }
        }
        md.push('\n');
    }

    if !info.outcomes.is_empty() {
        md.push_str(
            "## Steps of this run\n\n| step | time | figures | exit |\n|---|---:|---:|---|\n",
        );
        for o in &info.outcomes {
            md.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                cell(&o.command),
                crate::run::elapsed(std::time::Duration::from_secs_f64(o.secs.max(0.0))),
                o.figures,
                cell(&o.status)
            ));
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::charts;

    fn figures() -> Vec<Figure> {
        let serde = [100.0, 110.0, 90.0];
        vec![
            Figure::new("payload", "encode", "serde", "time per call", "ns")
                .rounds(&serde)
                .lower_is_better(),
            Figure::new("payload", "encode", "outbox", "time per call", "ns")
                .rounds(&[105.0, 120.0, 99.0])
                .lower_is_better()
                .against("serde", &serde)
                .target_at_most(1.10),
        ]
    }

    fn info(outcomes: Vec<Outcome>) -> RunInfo {
        RunInfo {
            machine: Machine {
                cpu: "AMD EPYC".into(),
                cores: 2,
                memory_gib: 23.5,
                kernel: "6.8.0".into(),
                commit: "4c8ebc5".into(),
                date: "2026-12-02 18:00 UTC".into(),
            },
            mode: "quick".into(),
            command: "bench-report --quick".into(),
            secs: 75.0,
            load_start: vec![1.0, 2.0, 3.0],
            load_end: vec![1.5, 2.0, 3.0],
            outcomes,
        }
    }

    fn outcome(name: &str, figures: usize, success: bool) -> Outcome {
        Outcome {
            name: name.into(),
            command: format!("cargo bench -p outbox-examples --bench {name}"),
            status: if success {
                "exit status: 0"
            } else {
                "exit status: 101"
            }
            .into(),
            success,
            secs: 12.0,
            figures,
            stderr_tail: if success {
                vec![]
            } else {
                vec!["thread 'main' panicked at relay.rs:3".into()]
            },
            bad_lines: vec![],
            log: format!("target/bench-report/{name}.log"),
        }
    }

    #[test]
    fn the_report_has_the_machine_ratios_tables_and_charts() {
        let figures = figures();
        let md = markdown(
            &info(vec![outcome("payload", 2, true)]),
            &figures,
            &charts(&figures),
            true,
        );
        for text in [
            "**AMD EPYC, 2 cores, 23.5 GiB memory, Linux 6.8.0**",
            "commit `4c8ebc5`",
            "a quick run (`bench-report --quick`) of 1m15s",
            "at the start 1.00 2.00 3.00",
            "![median paired ratios against their targets](benchmarks/ratios.svg)",
            // 105/100, 120/110, 99/90 → 1.05, 1.09, 1.10: median 1.09
            "| payload encode: outbox ÷ serde | 1.09 | ≤ 1.1 | **met** | 3 |",
            "## payload",
            "![payload encode: time per call](benchmarks/payload-encode-time-per-call.svg)",
            "| encode |  | outbox | time per call | 105 ns | 3: 99.0–120 | serde | 1.09 | ≤ 1.1 | **met** |",
        ] {
            assert!(md.contains(text), "no {text:?} in\n{md}");
        }
        assert!(!md.contains("Not measured"));
    }

    #[test]
    fn a_bench_without_figures_is_named_with_its_reason() {
        let md = markdown(
            &info(vec![
                outcome("payload", 2, true),
                outcome("relay", 0, false),
                outcome("consumer", 0, true),
            ]),
            &figures(),
            &[],
            false,
        );
        assert!(md.contains("## Not measured"));
        assert!(md.contains("- **relay** (`cargo bench -p outbox-examples --bench relay`): it failed (exit status: 101)"));
        assert!(md.contains("  thread 'main' panicked at relay.rs:3"));
        assert!(md.contains("- **consumer** (`cargo bench -p outbox-examples --bench consumer`): it exited successfully but recorded no figures"));
        assert!(!md.contains("ratios.svg"));
    }
}
