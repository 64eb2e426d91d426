//! The writer schemas of Avro records, by the id in their frame: fetched
//! from the schema registry once per id and kept for the consumer's life
//! (an id never changes meaning), shared by the partition tasks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
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

/// One fetch of an id's schema, in flight: every task wanting the id awaits
/// its outcome.
type Fetch = Shared<BoxFuture<'static, Result<Arc<WriterSchema>, SchemaError>>>;

/// The writer schemas known so far, and how to fetch the others.
pub(crate) struct WriterSchemas {
    registry: Option<SchemaRegistry>,
    known: Arc<Known>,
}

/// What the fetches, which run as tasks of their own, share with the cache.
#[derive(Default)]
struct Known {
    /// Never evicted: ids are immutable, and few.
    cache: RwLock<HashMap<u32, Arc<WriterSchema>>>,
    /// The fetches in flight, one per id: each leaves when it ends, having
    /// cached its schema if it got one (a failed id leaves nothing behind).
    fetching: Mutex<HashMap<u32, Fetch>>,
    /// Whether the last fetch failed for the registry's sake: its warning is
    /// logged once per outage, its end once.
    outage: AtomicBool,
}

impl WriterSchemas {
    pub(crate) fn new(registry: Option<SchemaRegistry>) -> Self {
        WriterSchemas {
            registry,
            known: Arc::default(),
        }
    }

    /// The schema of `id`, if fetched already.
    pub(crate) fn cached(&self, id: u32) -> Option<Arc<WriterSchema>> {
        self.known.cached(id)
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
    /// parsed and cached. Concurrent calls for one id make one request and
    /// share its outcome. The request runs on a task of its own: dropping
    /// this future (on shutdown or revocation) abandons the wait, not the
    /// fetch, which still ends within the registry's timeout.
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
        let fetch = {
            let mut fetching = self
                .known
                .fetching
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // A fetch caches its schema before it leaves `fetching`: one
            // that ended since the look above has cached it.
            if let Some(writer) = self.cached(id) {
                return Ok(writer);
            }
            fetching
                .entry(id)
                .or_insert_with(|| Known::start(&self.known, registry.clone(), id))
                .clone()
        };
        fetch.await
    }
}

/// Removes a fetch from those in flight when it ends, however it ends
/// (answered, failed, panicked, dropped with the runtime).
struct Leave<'a> {
    known: &'a Known,
    id: u32,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.known
            .fetching
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl Known {
    fn cached(&self, id: u32) -> Option<Arc<WriterSchema>> {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// Starts fetching `id` on a task of its own (called with `fetching`
    /// locked: the task leaves it only once it is in).
    fn start(known: &Arc<Known>, registry: SchemaRegistry, id: u32) -> Fetch {
        let known = Arc::clone(known);
        let task = tokio::spawn(async move {
            let _leave = Leave { known: &known, id };
            known.fetch(&registry, id).await
        });
        async move {
            task.await.unwrap_or_else(|error| {
                Err(SchemaError::Unavailable(format!(
                    "the fetch of the writer schema of id {id} ended early: {error}"
                )))
            })
        }
        .boxed()
        .shared()
    }

    /// Asks the registry for `id`'s schema, parses and caches it.
    async fn fetch(
        &self,
        registry: &SchemaRegistry,
        id: u32,
    ) -> Result<Arc<WriterSchema>, SchemaError> {
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
                // Id 0 never comes here: decoding refuses it, naming the relay.
                return Err(SchemaError::Permanent(format!(
                    "the record's writer schema (id {id}) is not in the schema registry: \
                     {error}"
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

    /// A registry answering `GET /schemas/ids/{id}` after `delay`: 503 while
    /// `failing`, else the schema. Counts its requests.
    struct FakeRegistry {
        url: String,
        requests: Arc<std::sync::atomic::AtomicUsize>,
        failing: Arc<AtomicBool>,
    }

    const SCHEMA: &str =
        r#"{"type": "record", "name": "U", "fields": [{"name": "id", "type": "long"}]}"#;

    impl FakeRegistry {
        async fn start(delay: std::time::Duration) -> Self {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let failing = Arc::new(AtomicBool::new(true));
            let (counted, fails) = (Arc::clone(&requests), Arc::clone(&failing));
            tokio::spawn(async move {
                loop {
                    let Ok((mut socket, _)) = listener.accept().await else {
                        return;
                    };
                    let (counted, fails) = (Arc::clone(&counted), Arc::clone(&fails));
                    tokio::spawn(async move {
                        let mut read = Vec::new();
                        let mut buffer = [0; 4096];
                        loop {
                            // One request (a GET: no body) at a time.
                            while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                                match socket.read(&mut buffer).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => read.extend_from_slice(&buffer[..n]),
                                }
                            }
                            let end = read.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                            read.drain(..end + 4);
                            counted.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(delay).await;
                            let (status, body) = if fails.load(Ordering::SeqCst) {
                                (
                                    "503 Service Unavailable",
                                    r#"{"error_code": 50301, "message": "down"}"#.to_owned(),
                                )
                            } else {
                                (
                                    "200 OK",
                                    serde_json::json!({ "schema": SCHEMA }).to_string(),
                                )
                            };
                            let answer = format!(
                                "HTTP/1.1 {status}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n\
                                 Content-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if socket.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            });
            FakeRegistry {
                url,
                requests,
                failing,
            }
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    /// `count` concurrent `get(id)`s.
    fn spawn_getters(
        schemas: &Arc<WriterSchemas>,
        count: usize,
        id: u32,
    ) -> Vec<tokio::task::JoinHandle<Result<Arc<WriterSchema>, SchemaError>>> {
        (0..count)
            .map(|_| {
                let schemas = Arc::clone(schemas);
                tokio::spawn(async move { schemas.get(id).await })
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_getters_share_one_fetch_and_its_failure() {
        let fake = FakeRegistry::start(std::time::Duration::from_millis(300)).await;
        let registry = SchemaRegistry::builder(&fake.url).build().unwrap();
        let schemas = Arc::new(WriterSchemas::new(Some(registry)));
        let getters = spawn_getters(&schemas, 8, 7);
        for getter in getters {
            let Err(SchemaError::Unavailable(error)) = getter.await.unwrap() else {
                panic!("unavailable");
            };
            assert!(error.contains("id 7"), "{error}");
        }
        assert_eq!(fake.requests(), 1, "one request for all the getters");
        assert!(
            schemas.known.fetching.lock().unwrap().is_empty(),
            "a failed fetch leaves nothing"
        );
        assert!(schemas.cached(7).is_none());

        // The registry is back: the next getters fetch it once more, once.
        fake.failing.store(false, Ordering::SeqCst);
        let getters = spawn_getters(&schemas, 8, 7);
        for getter in getters {
            getter.await.unwrap().expect("the schema");
        }
        assert_eq!(fake.requests(), 2);
        assert!(schemas.known.fetching.lock().unwrap().is_empty());
        assert!(schemas.cached(7).is_some());
        schemas.get(7).await.unwrap();
        assert_eq!(fake.requests(), 2, "cached");
    }

    #[tokio::test]
    async fn a_getter_leaving_leaves_the_fetch_to_the_others() {
        let fake = FakeRegistry::start(std::time::Duration::from_millis(300)).await;
        fake.failing.store(false, Ordering::SeqCst);
        let registry = SchemaRegistry::builder(&fake.url).build().unwrap();
        let schemas = WriterSchemas::new(Some(registry));
        // The first getter gives up (a shutdown): the fetch goes on.
        let left = tokio::time::timeout(std::time::Duration::from_millis(50), schemas.get(3)).await;
        assert!(left.is_err(), "still fetching");
        schemas.get(3).await.expect("the schema");
        assert_eq!(fake.requests(), 1);
        // Nobody waiting: the fetch still ends, and caches.
        let left = tokio::time::timeout(std::time::Duration::from_millis(50), schemas.get(4)).await;
        assert!(left.is_err());
        for _ in 0..100 {
            if schemas.cached(4).is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(schemas.cached(4).is_some());
        assert!(schemas.known.fetching.lock().unwrap().is_empty());
        assert_eq!(fake.requests(), 2);
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
