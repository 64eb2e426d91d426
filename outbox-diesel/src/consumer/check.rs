//! The consumer's start check: its database answers and has the consumer's
//! tables; its brokers answer, past TLS and the login; its topics exist.

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Nullable, Text};
use diesel_async::RunQueryDsl;
use diesel_async::pooled_connection::deadpool::PoolError;
use outbox::kafka::{CHECK_TIMEOUT, Topics, check_brokers};
use rdkafka::ClientConfig;

use super::{CHECKOUT_TIMEOUT, Pool};
use crate::error::{Error, Result};

/// The tables the consumer reads and writes, all made by the migrations
/// (projections' positions by the third, which also adds the column of
/// skipped stops: its absence says the migrations are behind).
const TABLES: [&str; 4] = [
    "outbox_inbox",
    "outbox_stopped_partitions",
    "outbox_messages",
    "outbox_projection_positions",
];

#[derive(QueryableByName)]
struct Database {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    user: String,
    #[diesel(sql_type = Nullable<Text>)]
    address: Option<String>,
    #[diesel(sql_type = Text)]
    search_path: String,
    #[diesel(sql_type = Bool)]
    inbox: bool,
    #[diesel(sql_type = Bool)]
    stops: bool,
    #[diesel(sql_type = Bool)]
    outbox: bool,
    #[diesel(sql_type = Bool)]
    positions: bool,
}

/// A connection out of `pool`, and the consumer's tables in its `search_path`.
/// `name` is how the user named the database, if they did.
pub(super) async fn database(pool: &Pool, name: Option<&str>) -> Result<()> {
    let fallback = || name.unwrap_or("the consumer's database").to_owned();
    let mut conn = match tokio::time::timeout(CHECKOUT_TIMEOUT, pool.get()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(error)) => {
            // The driver's error names the server (password masked); deadpool's
            // wrapper adds only "Error occurred while creating a new object".
            let source: Box<dyn std::error::Error + Send + Sync> = match error {
                PoolError::Backend(error) => Box::new(error),
                other => Box::new(other),
            };
            let named = name.is_some_and(|name| source.to_string().contains(name));
            let what = match name {
                Some(name) if !named => {
                    format!("the consumer's database ({name}) is not reachable")
                }
                _ => "the consumer's database is not reachable".to_owned(),
            };
            return Err(Error::NotReady {
                what,
                source: Some(source),
            });
        }
        Err(_) => {
            return Err(Error::NotReady {
                what: format!(
                    "PostgreSQL at {} gave no connection within {} s",
                    fallback(),
                    CHECKOUT_TIMEOUT.as_secs()
                ),
                source: None,
            });
        }
    };
    let found: Database = diesel::sql_query(
        "SELECT current_database()::text AS name, current_user::text AS user, \
                host(inet_server_addr()) || ':' || inet_server_port() AS address, \
                current_setting('search_path') AS search_path, \
                to_regclass('outbox_inbox') IS NOT NULL AS inbox, \
                to_regclass('outbox_stopped_partitions') IS NOT NULL AS stops, \
                to_regclass('outbox_messages') IS NOT NULL AS outbox, \
                to_regclass('outbox_projection_positions') IS NOT NULL AS positions",
    )
    .get_result(&mut conn)
    .await
    .map_err(|error| Error::NotReady {
        what: format!("could not look for the consumer's tables at {}", fallback()),
        source: Some(Box::new(error)),
    })?;
    let missing: Vec<&str> = TABLES
        .iter()
        .zip([found.inbox, found.stops, found.outbox, found.positions])
        .filter(|(_, present)| !present)
        .map(|(table, _)| *table)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let database = match name {
        Some(name) => name.to_owned(),
        None => format!(
            "postgres://{}@{}/{}",
            found.user,
            found.address.as_deref().unwrap_or("localhost"),
            found.name
        ),
    };
    Err(Error::NotReady {
        what: format!(
            "no {} at {database} (search_path: {}): run `outbox migrations run` first",
            missing.join(", "),
            found.search_path
        ),
        source: None,
    })
}

/// The brokers of `config` answer (past TLS and the login), and know `topics`
/// unless the consumer may create them (`allow.auto.create.topics=true`).
pub(super) async fn kafka(config: &ClientConfig, topics: &[String]) -> Result<()> {
    let probe = config.clone();
    let known: Topics =
        tokio::task::spawn_blocking(move || check_brokers(&probe, "consumer", CHECK_TIMEOUT))
            .await
            .map_err(|error| Error::NotReady {
                what: "the Kafka check did not finish".to_owned(),
                source: Some(Box::new(error)),
            })??;
    if config.get("allow.auto.create.topics") == Some("true") {
        return Ok(());
    }
    let missing: Vec<&str> = topics
        .iter()
        .map(String::as_str)
        .filter(|topic| !known.contains(*topic))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let brokers = config.get("bootstrap.servers").unwrap_or_default();
    let (noun, it) = if missing.len() == 1 {
        ("topic", "it")
    } else {
        ("topics", "them")
    };
    Err(Error::NotReady {
        what: format!(
            "no {noun} {} at Kafka {brokers}: create {it} first (`outbox topics create`), or set \
             `allow.auto.create.topics=true` for the consumer to create {it} (where the brokers allow it)",
            missing.join(", ")
        ),
        source: None,
    })
}
