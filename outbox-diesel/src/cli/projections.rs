//! `outbox projections list | rebuild`: consumers whose positions live in
//! the database, and their rebuilds.

use std::time::Duration;

use clap::Subcommand;

use super::{Failure, db, output};
use crate::consumer::{Projection, ProjectionStatus};

#[derive(Debug, Subcommand)]
pub(super) enum ProjectionsCommand {
    /// List projections, with each partition's position and what a rebuild has
    /// left to re-apply
    List {
        /// Print the projections as JSON
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a projection: its consumers (at their next start, or within their
    /// resume poll interval while running) run its reset, go back to the earliest
    /// records and re-apply everything up to where the topics stand, follow-ups
    /// muted, then go on live
    Rebuild {
        /// The projection (its consumer group)
        #[arg(value_name = "NAME")]
        name: String,
        /// Wait for the rebuild and show its progress until it catches up (Ctrl-C
        /// stops waiting, not the rebuild)
        #[arg(long)]
        wait: bool,
    },
}

/// How often `rebuild --wait` reads the positions.
const POLL: Duration = Duration::from_millis(500);

pub(super) fn run(url: &str, command: ProjectionsCommand) -> Result<String, Failure> {
    let mut conn = db::connect_to_outbox(url)?;
    match command {
        ProjectionsCommand::List { json } => {
            let projections = Projection::list(&mut conn)
                .map_err(|e| db::failure(url, "projections list", &e))?;
            if json {
                output::json(&projections)
            } else {
                Ok(list(&projections))
            }
        }
        ProjectionsCommand::Rebuild { name, wait } => {
            let requested = Projection::request_rebuild(&mut conn, &name)
                .map_err(|e| db::failure(url, "projections rebuild", &e))?;
            if !requested {
                let known = Projection::list(&mut conn)
                    .map(|all| all.into_iter().map(|p| p.name).collect::<Vec<_>>())
                    .unwrap_or_default();
                return Err(Failure::runtime(format!(
                    "no projection `{name}` has run here (known: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )));
            }
            let asked = format!(
                "rebuild of `{name}` requested: its consumers rebuild it at their next start, \
                 or within their resume poll interval while running\n"
            );
            if !wait {
                return Ok(asked);
            }
            eprint!("{asked}");
            follow(&mut conn, url, &name)
        }
    }
}

/// Waits for a consumer to take the request, then shows the replay until
/// every partition has caught up.
fn follow(conn: &mut diesel::PgConnection, url: &str, name: &str) -> Result<String, Failure> {
    let read = |conn: &mut diesel::PgConnection| -> Result<ProjectionStatus, Failure> {
        Projection::list(conn)
            .map_err(|e| db::failure(url, "projections rebuild", &e))?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Failure::runtime(format!("projection `{name}` was deleted")))
    };
    let waiting = indicatif::ProgressBar::new_spinner();
    waiting.set_message(format!(
        "waiting for a consumer of `{name}` to start the rebuild"
    ));
    let started = loop {
        let status = read(conn)?;
        if status.rebuild_requested_at.is_none() {
            break status;
        }
        waiting.tick();
        std::thread::sleep(POLL);
    };
    waiting.finish_and_clear();
    let total: i64 = started
        .partitions
        .iter()
        .map(|p| p.replay_until.unwrap_or(p.next_offset))
        .sum::<i64>()
        - started
            .partitions
            .iter()
            .map(|p| p.next_offset)
            .sum::<i64>();
    let bar = crate::consumer::rebuild_bar(name, total);
    let clock = std::time::Instant::now();
    loop {
        let status = read(conn)?;
        let left: i64 = status.partitions.iter().map(|p| p.replay_left()).sum();
        bar.set_position((total - left).max(0) as u64);
        if left == 0 {
            bar.finish_and_clear();
            let seconds = clock.elapsed().as_secs_f64().max(1e-3);
            return Ok(format!(
                "rebuilt `{name}`: {total} records re-applied in {seconds:.1} s \
                 ({:.0} records/s); live from here\n",
                total as f64 / seconds
            ));
        }
        std::thread::sleep(POLL);
    }
}

fn list(projections: &[ProjectionStatus]) -> String {
    if projections.is_empty() {
        return "no projection has run here\n".to_owned();
    }
    let rows: Vec<Vec<String>> = projections
        .iter()
        .flat_map(|projection| {
            let state = match (projection.rebuild_requested_at, projection.rebuilt_at) {
                (Some(_), _) => "rebuild requested".to_owned(),
                (None, Some(at)) => format!("rebuilt {}", at.format("%Y-%m-%d %H:%M:%S")),
                (None, None) => String::new(),
            };
            let head = projection.name.clone();
            if projection.partitions.is_empty() {
                return vec![vec![
                    head,
                    projection.topics.join(","),
                    "-".into(),
                    "-".into(),
                    state,
                ]];
            }
            projection
                .partitions
                .iter()
                .map(|p| {
                    let left = p.replay_left();
                    vec![
                        head.clone(),
                        format!("{}[{}]", p.topic, p.partition),
                        p.next_offset.to_string(),
                        if left > 0 {
                            left.to_string()
                        } else {
                            "-".into()
                        },
                        state.clone(),
                    ]
                })
                .collect()
        })
        .collect();
    output::table(
        &[
            "PROJECTION",
            "PARTITION",
            "NEXT OFFSET",
            "REBUILD LEFT",
            "STATE",
        ],
        &[false, false, true, true, false],
        &rows,
    )
}
