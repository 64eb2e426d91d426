//! The schema ids of Avro values: enqueue writes a Confluent frame whose
//! schema id is still 0 and points the row at its writer schema
//! (`outbox_messages.value_schema`, a key of `outbox_schemas`); the relay
//! registers that schema under its subject (or looks it up), and writes the
//! registry's id into the frame before sending it.
//!
//! Ids never change meaning, so each is asked for once per schema for the life
//! of the relay: after that, resolving a row is a map lookup and four bytes
//! written in place. A row whose schema cannot be resolved is refused through
//! the relay's refusal path (its key waits in the window, an attempt and the
//! error are recorded), retriable when waiting may help, permanent (parked)
//! when the registry refuses the schema or its row is missing. While the
//! registry is failing, a backoff refuses unresolved rows without asking it,
//! so a registry that hangs costs one timeout per backoff step.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use outbox::{PublishError, PublishErrorKind};

use crate::backoff::Backoff;
use crate::registry::{RegistryError, RegistryErrorKind, SchemaRegistry};
use crate::relay::store::Row;

/// First wait after the registry failed.
pub(crate) const REGISTRY_BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Longest wait while the registry keeps failing.
pub(crate) const REGISTRY_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// What a relay without a registry says about an Avro row.
const NO_REGISTRY: &str =
    "the relay has no schema registry: set SCHEMA_REGISTRY_URL or RelayBuilder::schema_registry";

/// The counter of registry requests, by `op` and `outcome`.
const REQUESTS_METRIC: &str = "outbox_schema_registry_requests_total";

/// A writer schema as enqueue stored it.
#[derive(diesel::QueryableByName)]
struct StoredSchema {
    #[diesel(sql_type = BigInt)]
    schema_key: i64,
    #[diesel(sql_type = Text)]
    subject: String,
    #[diesel(sql_type = Text)]
    schema: String,
}

/// A schema not resolved yet: its subject and text (kept until it is), and
/// why its last attempt failed, if it did.
struct Pending {
    subject: String,
    schema: String,
    /// Why its last attempt failed, until when it is not asked again.
    failure: Option<Failure>,
    /// Its own backoff, for refusals of this schema (not registered under
    /// lookup-only, incompatible, invalid): the registry is fine, the schema
    /// is not, and asking again at once would only get the same answer.
    backoff: Backoff,
}

impl Pending {
    /// A schema not asked for yet.
    fn new(subject: String, schema: String) -> Self {
        Pending {
            subject,
            schema,
            failure: None,
            backoff: Backoff::new(REGISTRY_BACKOFF_BASE, REGISTRY_BACKOFF_CAP),
        }
    }
}

/// A failed attempt to resolve a schema.
struct Failure {
    /// The refusal of its rows.
    error: PublishError,
    /// When the attempt was made: rows are parked on a fresh answer only.
    at: Instant,
    /// Not asked again before this.
    retry_at: Instant,
}

impl Failure {
    fn new(error: PublishError, at: Instant, delay: Duration) -> Self {
        Failure {
            error,
            at,
            retry_at: at + delay,
        }
    }
}

/// Resolves the schema ids of the rows' Avro values; one per relay run.
pub(crate) struct Resolver {
    registry: Option<SchemaRegistry>,
    auto_register: bool,
    /// `outbox_schemas.schema_key` → the registry's id.
    ids: HashMap<i64, u32>,
    pending: HashMap<i64, Pending>,
    /// While the registry itself is failing (unreachable, slow, 5xx,
    /// unauthorized): the error, and when to ask again.
    outage: Option<(RegistryError, Instant)>,
    backoff: Backoff,
}

impl Resolver {
    pub(crate) fn new(registry: Option<SchemaRegistry>, auto_register: bool) -> Self {
        Resolver {
            registry,
            auto_register,
            ids: HashMap::new(),
            pending: HashMap::new(),
            outage: None,
            backoff: Backoff::new(REGISTRY_BACKOFF_BASE, REGISTRY_BACKOFF_CAP),
        }
    }

    /// Writes the schema id into the frame of every row with a
    /// `value_schema`; returns the rows that cannot be sent yet (their
    /// indexes, ascending) with why. Rows without one cost a scan of the
    /// batch and nothing else.
    ///
    /// # Errors
    ///
    /// Only the database's (reading `outbox_schemas`): the relay reconnects.
    pub(crate) async fn resolve(
        &mut self,
        conn: &mut AsyncPgConnection,
        rows: &mut [Row],
    ) -> diesel::QueryResult<Vec<(usize, PublishError)>> {
        if !rows.iter().any(|row| row.value_schema.is_some()) {
            return Ok(Vec::new());
        }
        let now = Instant::now();
        let mut wanted: Vec<i64> = rows
            .iter()
            .filter_map(|row| row.value_schema)
            .filter(|key| !self.ids.contains_key(key))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let unknown: Vec<i64> = wanted
            .iter()
            .copied()
            .filter(|key| !self.pending.contains_key(key))
            .collect();
        if !unknown.is_empty() {
            self.load(conn, &unknown).await?;
        }
        self.ask(now, &wanted).await;
        let mut refused = Vec::new();
        for (index, row) in rows.iter_mut().enumerate() {
            let Some(key) = row.value_schema else {
                continue;
            };
            if let Some(error) = self.write_id(key, row, now) {
                refused.push((index, error));
            }
        }
        Ok(refused)
    }

    /// Reads the subject and text of `keys` (one query). Keys without a row
    /// are looked for again with each batch that holds one (their rows are
    /// parked, so that is rare).
    async fn load(
        &mut self,
        conn: &mut AsyncPgConnection,
        keys: &[i64],
    ) -> diesel::QueryResult<()> {
        let found: Vec<StoredSchema> = diesel::sql_query(
            "SELECT schema_key, subject, schema FROM outbox_schemas WHERE schema_key = ANY($1)",
        )
        .bind::<Array<BigInt>, _>(keys)
        .load(conn)
        .await?;
        for key in keys {
            if !found.iter().any(|s| s.schema_key == *key) {
                tracing::error!(
                    schema_key = key,
                    "relay: an Avro row names a writer schema missing from outbox_schemas"
                );
            }
        }
        for stored in found {
            self.pending.insert(
                stored.schema_key,
                Pending::new(stored.subject, stored.schema),
            );
        }
        Ok(())
    }

    /// Asks the registry for the pending schemas of this batch (`wanted`,
    /// sorted) that are due, concurrently (each call within the client's
    /// timeout), unless the registry is in its backoff or there is none. A
    /// schema no row waits for any more (its rows discarded) is not asked for.
    async fn ask(&mut self, now: Instant, wanted: &[i64]) {
        let due: Vec<i64> = self
            .pending
            .iter()
            .filter(|(key, _)| wanted.binary_search(key).is_ok())
            .filter(|(_, p)| p.failure.as_ref().is_none_or(|f| f.retry_at <= now))
            .map(|(key, _)| *key)
            .collect();
        if due.is_empty() {
            return;
        }
        let Some(registry) = self.registry.clone() else {
            let delay = self.backoff.next_delay();
            tracing::warn!(
                subjects = ?self.subjects(&due), ?delay,
                "relay: Avro rows wait: {NO_REGISTRY}"
            );
            for key in &due {
                if let Some(pending) = self.pending.get_mut(key) {
                    let error = PublishError::retriable(format!(
                        "subject `{}`: {NO_REGISTRY}",
                        pending.subject
                    ));
                    pending.failure = Some(Failure::new(error, now, delay));
                }
            }
            return;
        };
        if !self.outage_due(now) {
            return;
        }
        let op = if self.auto_register {
            "register"
        } else {
            "lookup"
        };
        let calls = due.iter().filter_map(|key| {
            let pending = self.pending.get(key)?;
            let registry = &registry;
            let auto_register = self.auto_register;
            Some(async move {
                let result = if auto_register {
                    registry
                        .register(&pending.subject, &pending.schema)
                        .await
                        .map(Some)
                } else {
                    registry.lookup(&pending.subject, &pending.schema).await
                };
                (*key, result)
            })
        });
        let results = futures::future::join_all(calls).await;
        let now = Instant::now();
        let mut outage: Option<RegistryError> = None;
        for (key, result) in results {
            let outcome = if result.is_ok() { "ok" } else { "error" };
            metrics::counter!(REQUESTS_METRIC, "op" => op, "outcome" => outcome).increment(1);
            match result {
                Ok(Some(id)) => {
                    if let Some(pending) = self.pending.remove(&key) {
                        tracing::info!(subject = %pending.subject, id, schema_key = key,
                            "relay: schema resolved");
                    }
                    self.ids.insert(key, id);
                }
                Ok(None) => {
                    if let Some(pending) = self.pending.get_mut(&key) {
                        let delay = pending.backoff.next_delay();
                        let error = PublishError::retriable(format!(
                            "subject `{}`: the schema is not registered at {} and the relay \
                             only looks schemas up (auto_register is off): run `outbox schemas \
                             register`",
                            pending.subject,
                            registry.url()
                        ));
                        tracing::warn!(subject = %pending.subject, ?delay,
                            "relay: Avro rows wait for their schema to be registered");
                        pending.failure = Some(Failure::new(error, now, delay));
                    }
                }
                Err(error) if is_outage(&error) => {
                    outage.get_or_insert(error);
                }
                Err(error) => {
                    if let Some(pending) = self.pending.get_mut(&key) {
                        let delay = pending.backoff.next_delay();
                        let refusal = refusal(&error);
                        if refusal.is_permanent() {
                            tracing::error!(subject = %pending.subject, %error,
                                "relay: the registry refuses the schema; its rows are parked");
                        } else {
                            tracing::warn!(subject = %pending.subject, %error, ?delay,
                                "relay: the registry refuses the schema; its rows wait");
                        }
                        pending.failure = Some(Failure::new(refusal, now, delay));
                    }
                }
            }
        }
        match outage {
            Some(error) => {
                let delay = self.backoff.next_delay();
                if error.kind() == RegistryErrorKind::Unauthorized {
                    tracing::error!(%error, ?delay,
                        "relay: the schema registry refuses the relay's credentials; Avro rows wait");
                } else {
                    tracing::warn!(%error, ?delay,
                        "relay: the schema registry is failing; Avro rows wait");
                }
                self.outage = Some((error, now + delay));
            }
            None => {
                self.backoff.reset();
                self.outage = None;
            }
        }
    }

    /// Whether the registry may be asked now (no outage, or its wait is over).
    fn outage_due(&self, now: Instant) -> bool {
        self.outage.as_ref().is_none_or(|(_, at)| *at <= now)
    }

    fn subjects(&self, keys: &[i64]) -> Vec<&str> {
        keys.iter()
            .filter_map(|key| self.pending.get(key).map(|p| p.subject.as_str()))
            .collect()
    }

    /// Writes `key`'s id into `row`'s frame, or says why the row cannot go.
    /// A refusal for good (parked) stands on an answer got since `now` only:
    /// an older one (a row seen again within its schema's backoff, say after
    /// `outbox parked retry`) leaves the row waiting for the next answer.
    fn write_id(&self, key: i64, row: &mut Row, now: Instant) -> Option<PublishError> {
        if let Some(id) = self.ids.get(&key) {
            return match row.payload.as_mut_slice() {
                [0, slot @ ..] if slot.len() >= 4 => {
                    slot[..4].copy_from_slice(&id.to_be_bytes());
                    None
                }
                payload => Some(PublishError::permanent(format!(
                    "the value of an Avro row (value_schema {key}) is not a Confluent frame \
                     (magic byte 0 and a 4-byte schema id): {} bytes, first {:?}",
                    payload.len(),
                    payload.iter().next()
                ))),
            };
        }
        if let Some(pending) = self.pending.get(&key) {
            if let Some(failure) = &pending.failure {
                if failure.error.is_permanent() && failure.at < now {
                    return Some(PublishError::retriable(format!(
                        "waiting to ask the registry again (in {:?}); its last answer: {}",
                        failure.retry_at.saturating_duration_since(Instant::now()),
                        failure.error
                    )));
                }
                return Some(failure.error.clone());
            }
            return Some(match &self.outage {
                Some((error, at)) => PublishError::new(
                    refusal(error).kind(),
                    format!(
                        "subject `{}`: waiting for the schema registry (next attempt in {:?}): {error}",
                        pending.subject,
                        at.saturating_duration_since(Instant::now())
                    ),
                ),
                None => PublishError::retriable(format!(
                    "subject `{}`: schema not resolved yet",
                    pending.subject
                )),
            });
        }
        Some(PublishError::permanent(format!(
            "the Avro row's writer schema (value_schema {key}) is not in outbox_schemas: \
             the relay cannot register it; restore the row, or discard the message"
        )))
    }

    /// When something pending may next be resolved: the end of the registry's
    /// backoff or of a schema's own, whichever is first. `None` when nothing waits.
    pub(crate) fn next_attempt(&self) -> Option<Instant> {
        let schemas = self
            .pending
            .values()
            .filter_map(|p| p.failure.as_ref().map(|f| f.retry_at));
        let outage = self.outage.as_ref().map(|(_, at)| *at);
        schemas.chain(outage).min()
    }

    /// The ids resolved so far (tests).
    #[cfg(test)]
    fn resolved(&self) -> usize {
        self.ids.len()
    }
}

/// Whether the registry itself is failing (not this schema): waiting helps,
/// or the relay's settings must change. Every schema waits then.
fn is_outage(error: &RegistryError) -> bool {
    is_outage_kind(error.kind())
}

/// How a registry error refuses the rows of its schema: permanent (parked)
/// when the registry refuses the schema itself, a configuration error (not
/// parked) when it refuses the relay, retriable otherwise. The text names the
/// operation, the subject, the registry and its message.
fn refusal(error: &RegistryError) -> PublishError {
    PublishError::new(refusal_kind(error.kind()), error.to_string())
}

fn refusal_kind(kind: RegistryErrorKind) -> PublishErrorKind {
    match kind {
        RegistryErrorKind::Incompatible | RegistryErrorKind::Invalid => PublishErrorKind::Permanent,
        RegistryErrorKind::Unauthorized | RegistryErrorKind::Tls | RegistryErrorKind::Config => {
            PublishErrorKind::Config
        }
        _ => PublishErrorKind::Retriable,
    }
}

/// Whether `kind` is the registry failing, not the schema (see [`is_outage`]).
fn is_outage_kind(kind: RegistryErrorKind) -> bool {
    kind.is_retriable()
        || matches!(
            kind,
            RegistryErrorKind::Unauthorized
                | RegistryErrorKind::Tls
                | RegistryErrorKind::Config
                | RegistryErrorKind::Protocol
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::headers::Headers;

    fn row(value_schema: Option<i64>, payload: Vec<u8>) -> Row {
        Row {
            id: 1,
            topic: "t".into(),
            partition_key: "k".into(),
            headers: Headers::parse(vec![0; 12]).expect("an empty array"),
            payload,
            attempts: 0,
            writers: None,
            value_schema,
        }
    }

    fn resolver_with(ids: &[(i64, u32)]) -> Resolver {
        let mut resolver = Resolver::new(None, true);
        resolver.ids.extend(ids.iter().copied());
        resolver
    }

    #[test]
    fn a_resolved_id_is_written_into_the_frame_in_place() {
        let resolver = resolver_with(&[(7, 0x0102_0304)]);
        let mut r = row(Some(7), vec![0, 0, 0, 0, 0, 42, 43]);
        assert!(resolver.write_id(7, &mut r, Instant::now()).is_none());
        assert_eq!(r.payload, [0, 1, 2, 3, 4, 42, 43]);
        assert_eq!(resolver.resolved(), 1);
    }

    #[test]
    fn a_value_that_is_not_a_frame_is_refused_for_good() {
        let resolver = resolver_with(&[(7, 9)]);
        for payload in [vec![0, 0, 0], vec![b'{', 0, 0, 0, 0, 1]] {
            let mut r = row(Some(7), payload.clone());
            let error = resolver
                .write_id(7, &mut r, Instant::now())
                .expect("refused");
            assert!(error.is_permanent(), "{error}");
            assert!(
                error.to_string().contains("not a Confluent frame"),
                "{error}"
            );
            assert_eq!(r.payload, payload, "left as it was");
        }
    }

    #[test]
    fn a_schema_missing_from_outbox_schemas_parks_its_rows() {
        let resolver = resolver_with(&[]);
        let error = resolver
            .write_id(5, &mut row(Some(5), vec![0; 6]), Instant::now())
            .unwrap();
        assert!(error.is_permanent());
        assert!(error.to_string().contains("value_schema 5"), "{error}");
    }

    #[test]
    fn without_a_registry_rows_wait_and_say_how_to_set_one() {
        let mut resolver = resolver_with(&[]);
        resolver
            .pending
            .insert(3, Pending::new("orders-value".into(), "{}".into()));
        futures::executor::block_on(resolver.ask(Instant::now(), &[3]));
        let error = resolver
            .write_id(3, &mut row(Some(3), vec![0; 6]), Instant::now())
            .unwrap();
        assert_eq!(error.kind(), PublishErrorKind::Retriable);
        assert_eq!(
            error.to_string(),
            format!("subject `orders-value`: {NO_REGISTRY}")
        );
        let next = resolver.next_attempt().expect("a next attempt");
        assert!(next > Instant::now(), "backs off");
        // Within the backoff: not asked again, same refusal.
        futures::executor::block_on(resolver.ask(Instant::now(), &[3]));
        assert_eq!(resolver.next_attempt(), Some(next));
    }

    #[test]
    fn schemas_no_row_of_the_batch_waits_for_are_not_asked_for() {
        let mut resolver = resolver_with(&[]);
        for key in [3, 4] {
            resolver
                .pending
                .insert(key, Pending::new(format!("s{key}-value"), "{}".into()));
        }
        // No registry: a schema asked for gets the "no registry" failure.
        futures::executor::block_on(resolver.ask(Instant::now(), &[4]));
        assert!(resolver.pending[&3].failure.is_none(), "not asked");
        assert!(resolver.pending[&4].failure.is_some(), "asked");
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_asked_once_per_backoff_step() {
        // A port nothing listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let registry = SchemaRegistry::builder(&url)
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let mut resolver = Resolver::new(Some(registry), true);
        for key in [1, 2] {
            resolver
                .pending
                .insert(key, Pending::new(format!("s{key}-value"), "{}".into()));
        }
        resolver.ask(Instant::now(), &[1, 2]).await;
        let (error, at) = resolver.outage.clone().expect("an outage");
        assert_eq!(error.kind(), RegistryErrorKind::Unreachable, "{error}");
        let refused = resolver
            .write_id(2, &mut row(Some(2), vec![0; 6]), Instant::now())
            .unwrap();
        assert_eq!(refused.kind(), PublishErrorKind::Retriable);
        assert!(
            refused
                .to_string()
                .starts_with("subject `s2-value`: waiting for the schema registry"),
            "{refused}"
        );
        // Within the backoff nothing is asked: the outage stays as it was.
        resolver.ask(Instant::now(), &[1, 2]).await;
        assert_eq!(resolver.outage.as_ref().map(|(_, at)| *at), Some(at));
        assert_eq!(resolver.next_attempt(), Some(at));
    }

    #[test]
    fn an_old_refusal_for_good_leaves_rows_waiting_for_a_fresh_answer() {
        let mut resolver = resolver_with(&[]);
        let asked = Instant::now();
        resolver.pending.insert(
            4,
            Pending {
                failure: Some(Failure::new(
                    PublishError::permanent("incompatible schema"),
                    asked,
                    Duration::from_secs(10),
                )),
                ..Pending::new("orders-value".into(), "{}".into())
            },
        );
        let mut r = row(Some(4), vec![0; 6]);
        let fresh = resolver.write_id(4, &mut r, asked).unwrap();
        assert!(fresh.is_permanent(), "answered in this resolve: parked");
        let later = asked + Duration::from_millis(1);
        let stale = resolver.write_id(4, &mut r, later).unwrap();
        assert_eq!(stale.kind(), PublishErrorKind::Retriable, "{stale}");
        assert!(
            stale
                .to_string()
                .contains("its last answer: incompatible schema"),
            "{stale}"
        );
    }

    #[test]
    fn the_registry_refusing_the_schema_parks_and_refusing_the_relay_does_not() {
        use RegistryErrorKind as K;
        for (kind, expected, outage) in [
            (K::Incompatible, PublishErrorKind::Permanent, false),
            (K::Invalid, PublishErrorKind::Permanent, false),
            (K::Unauthorized, PublishErrorKind::Config, true),
            (K::Tls, PublishErrorKind::Config, true),
            (K::Unreachable, PublishErrorKind::Retriable, true),
            (K::Unavailable, PublishErrorKind::Retriable, true),
            (K::Timeout, PublishErrorKind::Retriable, true),
            (K::Protocol, PublishErrorKind::Retriable, true),
        ] {
            assert_eq!(refusal_kind(kind), expected, "{kind:?}");
            assert_eq!(is_outage_kind(kind), outage, "{kind:?}");
        }
    }
}
