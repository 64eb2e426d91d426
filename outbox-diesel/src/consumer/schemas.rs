//! The writer schemas of Avro records, by the id in their frame: fetched
//! from the schema registry once per id and kept for the consumer's life
//! (an id never changes meaning), shared by the partition tasks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use outbox::Message;
use outbox::avro::WriterSchema;

use crate::registry::{RegistryErrorKind, SchemaRegistry};

/// The metric counting the consumer's registry requests, by `op` and `outcome`.
pub(crate) const REQUESTS_METRIC: &str = "outbox_schema_registry_requests_total";

/// Why a record's writer schema is not at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SchemaError {
    /// The registry cannot answer now (unreachable, too slow, 5xx or 429), or
    /// cannot be used as configured (refused credentials, an untrusted
    /// certificate, a URL that is not a registry's API): not the record's
    /// fault, so the partition waits and tries again.
    Unavailable(String),
    /// The record names a schema that cannot be had: an id the registry does
    /// not know, a schema that does not parse, no registry configured. The
    /// partition's failure policy applies.
    Permanent(String),
}

/// The writer schemas known so far, and how to fetch the others.
pub(crate) struct WriterSchemas {
    registry: Option<SchemaRegistry>,
    /// Never evicted: ids are immutable, and few.
    cache: RwLock<HashMap<u32, Arc<WriterSchema>>>,
    /// One fetch per id at a time: tasks wanting the same id wait for the
    /// one fetching it, then find it cached.
    fetching: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<()>>>>,
    /// Whether the last fetch failed for the registry's sake: its warning is
    /// logged once per outage, its end once.
    outage: AtomicBool,
}

impl WriterSchemas {
    pub(crate) fn new(registry: Option<SchemaRegistry>) -> Self {
        WriterSchemas {
            registry,
            cache: RwLock::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
            outage: AtomicBool::new(false),
        }
    }

    /// The schema of `id`, if fetched already.
    pub(crate) fn cached(&self, id: u32) -> Option<Arc<WriterSchema>> {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// The id of the writer schema `message` still needs: `None` for a JSON
    /// message or an Avro one whose schema is attached.
    pub(crate) fn needed(message: &Message) -> Option<u32> {
        match message.payloads.writer_schema() {
            Some(_) => None,
            None => message.payloads.avro_schema_id(),
        }
    }

    /// Attaches the cached writer schema to an Avro `message`; `false` when
    /// it needs one that is not cached (fetch it with [`get`](Self::get)).
    pub(crate) fn attach_cached(&self, message: &mut Message) -> bool {
        let Some(id) = Self::needed(message) else {
            return true;
        };
        match self.cached(id) {
            Some(writer) => {
                message.payloads.set_writer_schema(writer);
                true
            }
            None => false,
        }
    }

    /// The writer schema of `id`: cached, or fetched from the registry,
    /// parsed and cached. Concurrent calls for one id make one request.
    pub(crate) async fn get(&self, id: u32) -> Result<Arc<WriterSchema>, SchemaError> {
        if let Some(writer) = self.cached(id) {
            return Ok(writer);
        }
        let Some(registry) = &self.registry else {
            return Err(SchemaError::Permanent(format!(
                "the record is Avro (writer schema id {id}) and the consumer has no schema \
                 registry to read it with: set SCHEMA_REGISTRY_URL / ConsumerBuilder::schema_registry"
            )));
        };
        let gate = Arc::clone(
            self.fetching
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(id)
                .or_default(),
        );
        let _turn = gate.lock().await;
        // Fetched by the task that had the turn before.
        if let Some(writer) = self.cached(id) {
            return Ok(writer);
        }
        let result = registry.schema(id).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) if error.kind() == RegistryErrorKind::NotFound => "not_found",
            Err(error) if error.is_retriable() => "unavailable",
            Err(_) => "error",
        };
        metrics::counter!(REQUESTS_METRIC, "op" => "schema", "outcome" => outcome).increment(1);
        let text = match result {
            Ok(text) => text,
            Err(error) if error.kind() == RegistryErrorKind::NotFound => {
                self.answered(registry);
                let hint = if id == 0 {
                    " (id 0 is written at enqueue and replaced by the relay: was this \
                     record published by a relay without Avro support?)"
                } else {
                    ""
                };
                return Err(SchemaError::Permanent(format!(
                    "the record's writer schema (id {id}) is not in the schema registry: \
                     {error}{hint}"
                )));
            }
            Err(error) => {
                let error = format!("the writer schema of id {id} cannot be fetched: {error}");
                if !self.outage.swap(true, Ordering::SeqCst) {
                    tracing::warn!(%error, "schema registry unavailable; records needing \
                        a schema not fetched yet wait for it");
                } else {
                    tracing::debug!(%error, "schema registry still unavailable");
                }
                return Err(SchemaError::Unavailable(error));
            }
        };
        self.answered(registry);
        let writer = WriterSchema::parse(&text).map_err(|error| {
            SchemaError::Permanent(format!(
                "the record's writer schema (id {id}, from the schema registry at {}) is not \
                 an Avro record schema this consumer reads: {error}",
                registry.url()
            ))
        })?;
        let writer = Arc::new(writer);
        self.cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::clone(&writer));
        self.fetching
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        Ok(writer)
    }

    /// The registry answered: an outage, if any, is over.
    fn answered(&self, registry: &SchemaRegistry) {
        if self.outage.swap(false, Ordering::SeqCst) {
            tracing::info!(url = registry.url(), "schema registry answers again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avro_message(id: u32) -> Message {
        let payloads = outbox::Payloads::avro(1, id, vec![2]).expect("an Avro datum");
        Message::new(
            outbox::Event::Created,
            "accounts",
            "users",
            "t",
            "1",
            payloads,
        )
        .expect("a message")
    }

    #[tokio::test]
    async fn an_avro_record_without_a_registry_says_how_to_configure_one() {
        let schemas = WriterSchemas::new(None);
        let mut message = avro_message(42);
        assert_eq!(WriterSchemas::needed(&message), Some(42));
        assert!(!schemas.attach_cached(&mut message));
        let Err(SchemaError::Permanent(error)) = schemas.get(42).await else {
            panic!("a permanent error");
        };
        assert!(error.contains("id 42"), "{error}");
        assert!(
            error.contains("set SCHEMA_REGISTRY_URL / ConsumerBuilder::schema_registry"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_waited_for() {
        // Nothing listens on port 9 (discard) of the loopback here.
        let registry = SchemaRegistry::builder("http://127.0.0.1:9")
            .build()
            .unwrap();
        let schemas = WriterSchemas::new(Some(registry));
        let Err(SchemaError::Unavailable(error)) = schemas.get(7).await else {
            panic!("unavailable");
        };
        assert!(error.contains("id 7"), "{error}");
        assert!(schemas.cached(7).is_none());
    }

    #[test]
    fn json_messages_need_no_schema() {
        let payloads = outbox::Payloads::new(1, serde_json::json!({"id": 1})).unwrap();
        let mut message = Message::new(
            outbox::Event::Created,
            "accounts",
            "users",
            "t",
            "1",
            payloads,
        )
        .unwrap();
        assert_eq!(WriterSchemas::needed(&message), None);
        assert!(WriterSchemas::new(None).attach_cached(&mut message));
    }
}
