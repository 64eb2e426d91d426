//! The error-event failure policy: a record that cannot be applied becomes
//! an `error.<event>` message in the consumer's own outbox, written with the
//! record's inbox row (or its projection's position) in one transaction.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use outbox::kafka::RawHeader;
use outbox::{Event, Message, Payloads};
use rdkafka::Message as _;
use rdkafka::message::OwnedMessage;

use super::apply::{ApplyError, Claim};
use super::inbox::{self, Received};
use super::positions;
use super::worker::{Failure, raw_header as header};
use crate::Outbox;

/// The event of a record whose own event cannot be read.
const UNREADABLE: &str = "error.unreadable";

/// How an error event went.
#[derive(Debug)]
pub(crate) enum ErrorEventSent {
    /// Enqueued (or, while a rebuild re-applies the record, muted) and the
    /// record acknowledged.
    Sent,
    /// The inbox already has the record: it was applied, or its error event
    /// sent, before a crash. Nothing enqueued.
    AlreadySent,
    /// The projection's position moved: nothing written.
    Moved,
    /// Shutdown or revocation came first.
    Abandoned,
    /// The event could not be made or written (a topic name the outbox
    /// refuses, …): the partition stops instead, saying so.
    Failed(String),
}

/// An error event and the inbox row it is written with.
pub(crate) struct ErrorEvent {
    message: Message,
    /// The record's `from` and topic: its inbox row's key and place.
    source: String,
    topic: String,
}

/// The error event about `record`, from `producer`, by `failure`'s policy.
pub(crate) fn event_of(
    record: &OwnedMessage,
    failure: &Failure,
    group: &str,
    producer: &str,
) -> Result<ErrorEvent, String> {
    let topic = failure
        .policy
        .error_topic()
        .ok_or("the error-event policy names no topic")?;
    let headers: Vec<RawHeader<'_>> = record.headers().map_or_else(Vec::new, |headers| {
        outbox::kafka::read_headers(headers).collect()
    });
    let original = header(&headers, outbox::headers::EVENT);
    // PostgreSQL text holds no NUL; a garbage record may.
    let text = |value: String| value.replace('\0', "");
    let route = text(header(&headers, outbox::headers::TO).unwrap_or_default());
    let key = text(
        record
            .key()
            .map(|key| String::from_utf8_lossy(key).into_owned())
            .unwrap_or_default(),
    );
    let event = original
        .as_deref()
        .and_then(|event| Event::custom(&format!("error.{event}")).ok())
        .unwrap_or_else(|| Event::custom(UNREADABLE).expect("a valid event name"));
    let payload = serde_json::json!({
        "message_id": failure.message_id,
        "event": original,
        "route": route,
        "key": key,
        "topic": record.topic(),
        "partition": record.partition(),
        "offset": record.offset(),
        "group": group,
        "kind": failure.kind,
        "error": failure.error,
        "attempts": failure.attempts,
    });
    let payloads = Payloads::new(1, payload).map_err(|error| error.to_string())?;
    let message = Message::new(event, producer, &route, topic, key, payloads)
        .map_err(|error| format!("error event to {topic}: {error}"))?;
    Ok(ErrorEvent {
        message,
        source: text(header(&headers, outbox::headers::FROM).unwrap_or_default()),
        topic: record.topic().to_owned(),
    })
}

/// Writes `event` about the record at `partition`/`offset` (message
/// `message_id`, when it could be read) in one transaction with its claim.
pub(crate) async fn enqueue(
    conn: &mut AsyncPgConnection,
    outbox: &Outbox,
    claim: Claim<'_>,
    event: &ErrorEvent,
    message_id: Option<uuid::Uuid>,
    partition: i32,
    offset: i64,
) -> Result<ErrorEventSent, ApplyError> {
    conn.transaction::<_, ApplyError, _>(async |conn| {
        let muted = match claim {
            Claim::Inbox => {
                // A record whose id cannot be read has no inbox row: its
                // error event is at least once.
                if let Some(message_id) = message_id {
                    let received = Received {
                        source: &event.source,
                        message_id,
                        topic: &event.topic,
                        partition,
                        offset,
                    };
                    if !inbox::claim(conn, &received).await? {
                        return Ok(ErrorEventSent::AlreadySent);
                    }
                }
                false
            }
            Claim::Position {
                projection,
                expected,
                follow_ups_in_rebuild,
            } => {
                let moved = positions::advance(
                    conn,
                    projection,
                    &event.topic,
                    partition,
                    expected,
                    offset + 1,
                )
                .await?;
                match moved {
                    Some(position) => position.replaying(offset) && !follow_ups_in_rebuild,
                    None => return Ok(ErrorEventSent::Moved),
                }
            }
        };
        if !muted {
            outbox
                .enqueue_message_async(conn, &event.message)
                .await
                .map_err(|error| match error {
                    crate::Error::Database(error) => ApplyError::from(error),
                    other => ApplyError::Handler(outbox::HandlerError::permanent(other)),
                })?;
        }
        Ok(ErrorEventSent::Sent)
    })
    .await
}
