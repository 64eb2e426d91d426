//! Realtime notifications: small messages for a user's session or a channel,
//! sent through the outbox like any other message.

use diesel::PgConnection;
use diesel_async::AsyncPgConnection;
use outbox::{Event, Message, MessageId, Payloads};
use serde_json::{Map, Value};

use crate::error::Result;
use crate::pg::enqueue::Outbox;

/// The event of realtime messages unless [`Realtime::event`] says otherwise.
pub const REALTIME_EVENT: &str = "notify";

/// Builds realtime messages on a topic of their own. Made by [`Outbox::realtime`].
///
/// A realtime message goes to a session (one user's connection) or a channel
/// (everyone subscribed). Its payload (version 1) is
/// `{"session_id": …}` or `{"channel": …}`, plus `"data"` and `"metadata"`.
/// Defaults: event `notify`, `to` = `<producer>/real_time/notify`, `from` = the
/// producer, partition key = the session id or channel name. Each can be
/// overridden.
///
/// # Examples
///
/// ```
/// use outbox_diesel::Outbox;
/// use serde_json::json;
///
/// let realtime = Outbox::new("accounts").realtime("realtime");
/// let message = realtime
///     .session("sess-42", json!({"text": "Your export is ready"}))
///     .metadata("priority", json!("high"))
///     .build()?;
/// assert_eq!(message.to, "accounts/real_time/notify");
/// assert_eq!(message.partition_key, "sess-42");
/// assert_eq!(message.payloads.get(1).unwrap()["metadata"]["priority"], "high");
/// # Ok::<(), outbox::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Realtime {
    outbox: Outbox,
    topic: String,
    to: String,
    event: String,
}

impl Realtime {
    pub(crate) fn new(outbox: Outbox, topic: String) -> Self {
        let to = format!("{}/real_time/notify", outbox.producer());
        Realtime {
            outbox,
            topic,
            to,
            event: REALTIME_EVENT.to_owned(),
        }
    }

    /// Sets the route (`to`) of the messages built from now on.
    #[must_use]
    pub fn to(mut self, route: impl Into<String>) -> Self {
        self.to = route.into();
        self
    }

    /// Sets the event name of the messages built from now on (checked when built).
    #[must_use]
    pub fn event(mut self, name: impl Into<String>) -> Self {
        self.event = name.into();
        self
    }

    /// A message for one session, keyed by the session id.
    pub fn session(&self, session_id: &str, data: Value) -> RealtimeMessage<'_> {
        self.message("session_id", session_id, data)
    }

    /// A message for everyone on `channel`, keyed by the channel name.
    pub fn channel(&self, channel: &str, data: Value) -> RealtimeMessage<'_> {
        self.message("channel", channel, data)
    }

    fn message(&self, field: &'static str, address: &str, data: Value) -> RealtimeMessage<'_> {
        RealtimeMessage {
            realtime: self,
            address: (field, address.to_owned()),
            data,
            metadata: Map::new(),
            partition_key: None,
            from: None,
        }
    }
}

/// One realtime message being built; see [`Realtime`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RealtimeMessage<'r> {
    realtime: &'r Realtime,
    address: (&'static str, String),
    data: Value,
    metadata: Map<String, Value>,
    partition_key: Option<String>,
    from: Option<String>,
}

impl RealtimeMessage<'_> {
    /// Adds a metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: Value) -> Self {
        self.metadata.insert(key.into(), value);
        self
    }

    /// Overrides the partition key (default: the session id or channel name).
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Overrides `from` (default: the outbox's producer name).
    pub fn from(mut self, from: impl Into<String>) -> Self {
        self.from = Some(from.into());
        self
    }

    /// The message.
    ///
    /// # Errors
    ///
    /// [`outbox::Error::InvalidEventName`] when the event name set with
    /// [`Realtime::event`] is not valid; [`outbox::Error::InvalidTopic`] when
    /// its topic is not.
    pub fn build(self) -> Result<Message, outbox::Error> {
        let realtime = self.realtime;
        let event = Event::custom(&realtime.event)?;
        let (field, address) = self.address;
        let key = self.partition_key.unwrap_or_else(|| address.clone());
        let mut payload = Map::new();
        payload.insert(field.to_owned(), Value::String(address));
        payload.insert("data".to_owned(), self.data);
        payload.insert("metadata".to_owned(), Value::Object(self.metadata));
        let from = self
            .from
            .unwrap_or_else(|| realtime.outbox.producer().to_owned());
        let mut message = Message::new(
            event,
            from,
            realtime.to.clone(),
            realtime.topic.clone(),
            key,
            Payloads::new(1, Value::Object(payload))?,
        )?;
        message.trace = realtime.outbox.trace().cloned();
        Ok(message)
    }

    /// Builds the message and enqueues it in the transaction open on `conn`.
    ///
    /// # Errors
    ///
    /// As for [`build`](RealtimeMessage::build) and [`Outbox::enqueue_message`].
    pub fn enqueue(self, conn: &mut PgConnection) -> Result<MessageId> {
        let outbox = self.realtime.outbox.clone();
        let message = self.build()?;
        outbox.enqueue_message(conn, &message)
    }

    /// [`enqueue`](RealtimeMessage::enqueue) on a diesel-async connection.
    ///
    /// # Errors
    ///
    /// As for [`enqueue`](RealtimeMessage::enqueue).
    pub async fn enqueue_async(self, conn: &mut AsyncPgConnection) -> Result<MessageId> {
        let outbox = self.realtime.outbox.clone();
        let message = self.build()?;
        outbox.enqueue_message_async(conn, &message).await
    }
}
