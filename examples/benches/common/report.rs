//! Printing: numbers, the opening line, the summary's heading and its list
//! of problems.

/// `12345.6` → `12,346` (`n/a` for NaN and infinities).
pub(crate) fn group(n: f64) -> String {
    if !n.is_finite() {
        return "n/a".into();
    }
    let digits = format!("{:.0}", n.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0.0 { format!("-{out}") } else { out }
}

/// The machine's load averages over 1, 5 and 15 minutes, as `/proc/loadavg` has them.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The run's first line: what is measured, on which services and machine.
pub(crate) fn banner(what: &str, server_url: &str, brokers: &str) {
    println!(
        "outbox {what} benchmark: PostgreSQL {}, Kafka {brokers}, {} cores, load average {}",
        outbox_diesel::mask_password(server_url),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
}

/// The summary's heading.
pub(crate) fn summary_heading() {
    println!(
        "\n==================== summary (load average now {}) ====================",
        load_average()
    );
}

/// The problems the run saw, if any, after the summary.
pub(crate) fn problems(problems: &[String]) {
    if !problems.is_empty() {
        println!("\nproblems seen:");
        for problem in problems {
            println!("  - {problem}");
        }
    }
}
