//! `bench-report`: every benchmark in one run, written up as
//! `docs/benchmarks.md` with SVG charts under `docs/benchmarks/`.
//!
//! ```sh
//! cargo run -p outbox-examples --release --bin bench-report            # everything
//! cargo run -p outbox-examples --release --bin bench-report -- --quick # a smoke run
//! cargo run -p outbox-examples --release --bin bench-report -- --only payload --only enqueue
//! cargo run -p outbox-examples --release --bin bench-report -- --from docs/benchmarks  # redraw
//! ```
//!
//! It builds the benchmarks (`cargo bench --no-run`), then runs each step as
//! a child process, what `cargo bench -p outbox-examples --bench
//! <payload|relay|consumer> -- <part>` runs (the bench executable itself, so
//! that no cargo holds the build lock for the length of the run), with `OUTBOX_BENCH_RESULTS` naming a file the benchmark appends its figures
//! to as JSON lines (`examples/benches/common/results.rs`). The steps, in
//! order: payload encode/decode; the relay's drain at each batch size
//! (`--batches`, default 100 and 1000; raw produce of the same records
//! interleaved), its memory, live traffic, enqueue at 1 and 8 clients, and
//! latency; the consumer's catch-up (batched, per record, hand-written) and
//! live latency. Each step's output goes to `target/bench-report/<step>.log`;
//! a progress line shows the step, its time and its last output line.
//!
//! The report (`--out`, default `docs`): `benchmarks.md` with the machine
//! (CPU, cores, memory from `/proc`), the commit, the date and the load
//! average; the median paired ratios against their targets; per benchmark,
//! its charts and a table of every figure (value = median of the rounds,
//! the rounds' range, baseline, median paired ratio, target, load average);
//! and, for a step that recorded nothing, its exit status and last stderr
//! lines. Beside it, `benchmarks/*.svg`, `benchmarks/results.jsonl` (every
//! figure recorded: the charts and tables come from these only) and
//! `benchmarks/run.json` (the machine and the steps), from which `--from`
//! draws the report again without measuring.
//!
//! Sizes: the benchmarks' own defaults (200,000 rows and 3 rounds for the
//! relay, 200,000 records and 5 rounds for the consumer, 40 interleaved
//! rounds for payload); `--quick` uses 20,000 rows or records, 2 rounds and
//! 5-second live phases. `OUTBOX_BENCH_*` variables set in the environment
//! win over both. A full run takes an estimated 25–35 minutes on 2 cores
//! (the consumer's catch-up, 5 rounds of 4 sides over 200,000 records, is
//! about a third of it); `--quick` a few minutes once built.

#[path = "bench_report/charts.rs"]
mod charts;
#[path = "bench_report/format.rs"]
mod format;
#[path = "bench_report/machine.rs"]
mod machine;
#[path = "bench_report/report.rs"]
mod report;
#[path = "../../benches/common/results.rs"]
#[allow(dead_code)] // the recording side serves the benchmarks
mod results;
#[path = "bench_report/run.rs"]
mod run;
#[path = "bench_report/steps.rs"]
mod steps;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use report::{ASSETS, RunInfo};
use results::Figure;

/// Runs every outbox benchmark and writes `benchmarks.md` with SVG charts.
#[derive(Debug, Parser)]
#[command(name = "bench-report")]
struct Cli {
    /// Small sizes and few rounds: a smoke run, not figures to publish.
    #[arg(long)]
    quick: bool,
    /// Run only these steps: a bench (`payload`, `relay`, `consumer`), a part
    /// (`drain`, `memory`, `live`, `enqueue`, `latency`, `catchup`) or both
    /// (`consumer-live`); repeat or separate with commas.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where `benchmarks.md` and `benchmarks/` are written.
    #[arg(long, default_value = "docs")]
    out: PathBuf,
    /// The relay's batch sizes, one drain step each.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    batches: Vec<usize>,
    /// Draw the report again from a `benchmarks/` folder of an earlier run
    /// (its `results.jsonl` and `run.json`), measuring nothing.
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("bench-report: {error}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run(cli: Cli) -> Result<ExitCode> {
    let workspace = workspace();
    let out = if cli.out.is_absolute() {
        cli.out.clone()
    } else {
        std::env::current_dir()?.join(&cli.out)
    };
    if let Some(from) = &cli.from {
        let text = std::fs::read_to_string(from.join("results.jsonl"))
            .map_err(|e| format!("{}: {e}", from.join("results.jsonl").display()))?;
        let (figures, bad) = results::parse_lines(&text);
        for (line, error) in bad {
            eprintln!("results.jsonl line {line} left out: {error}");
        }
        let info: RunInfo = match std::fs::read_to_string(from.join("run.json")) {
            Ok(text) => serde_json::from_str(&text)?,
            Err(_) => RunInfo::default(),
        };
        write(&out, &info, &figures)?;
        return Ok(ExitCode::SUCCESS);
    }

    let plan = steps::Plan {
        quick: cli.quick,
        only: cli.only.clone(),
        batches: cli.batches.clone(),
    };
    let steps = steps::steps(&plan);
    if steps.is_empty() {
        return Err(format!(
            "--only {} selects no step; names: {}",
            cli.only.join(","),
            steps::NAMES
        )
        .into());
    }
    let work = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("bench-report");
    std::fs::create_dir_all(&work)?;
    let mut runner = run::Runner {
        cargo: std::env::var_os("CARGO")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("cargo")),
        workspace: workspace.clone(),
        work,
        executables: Default::default(),
    };
    let started = Instant::now();
    let mut info = RunInfo {
        machine: machine::Machine::here(&workspace),
        mode: if cli.quick { "quick" } else { "full" }.into(),
        command: std::iter::once("bench-report".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        secs: 0.0,
        load_start: results::load_average(),
        load_end: Vec::new(),
        outcomes: Vec::new(),
    };
    eprintln!(
        "bench-report: {} steps ({} run) on {}",
        steps.len(),
        info.mode,
        info.machine.describe()
    );
    let mut benches: Vec<&str> = Vec::new();
    for step in &steps {
        if !benches.contains(&step.bench) {
            benches.push(step.bench);
        }
    }
    runner.executables = runner.build(&benches);
    let mut figures = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let (outcome, mut recorded) = runner.run(step, i + 1, steps.len());
        info.outcomes.push(outcome);
        figures.append(&mut recorded);
    }
    info.secs = started.elapsed().as_secs_f64();
    info.load_end = results::load_average();
    write(&out, &info, &figures)?;
    let missing: Vec<&str> = info
        .outcomes
        .iter()
        .filter(|o| o.missing_reason().is_some())
        .map(|o| o.name.as_str())
        .collect();
    eprintln!(
        "bench-report: {} figures in {}; wrote {}",
        figures.len(),
        run::elapsed(started.elapsed()),
        out.join("benchmarks.md").display()
    );
    if missing.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("bench-report: no figures from: {}", missing.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// Writes `benchmarks.md`, the charts, `results.jsonl` and `run.json` under `out`.
fn write(out: &Path, info: &RunInfo, figures: &[Figure]) -> Result<()> {
    let assets = out.join(ASSETS);
    std::fs::create_dir_all(&assets)?;
    // Charts of an earlier run that this one did not draw would be stale.
    for entry in std::fs::read_dir(&assets)?.flatten() {
        if entry.path().extension().is_some_and(|e| e == "svg") {
            std::fs::remove_file(entry.path())?;
        }
    }
    let mut lines = String::new();
    for figure in figures {
        lines.push_str(&serde_json::to_string(figure)?);
        lines.push('\n');
    }
    std::fs::write(assets.join("results.jsonl"), lines)?;
    std::fs::write(assets.join("run.json"), serde_json::to_string_pretty(info)?)?;
    let charts = charts::charts(figures);
    for chart in &charts {
        std::fs::write(assets.join(&chart.file), charts::bars_svg(chart)?)?;
    }
    let ratios = charts::ratios_svg(figures)?;
    if let Some(svg) = &ratios {
        std::fs::write(assets.join("ratios.svg"), svg)?;
    }
    std::fs::write(
        out.join("benchmarks.md"),
        report::markdown(info, figures, &charts, ratios.is_some()),
    )?;
    Ok(())
}
