//! The error-event failure policy, end to end: a record no retry can apply
//! becomes an `error.updated` message in the consumer's own outbox, its relay
//! publishes it, and another service handles it with an ordinary
//! `#[on("error.updated")]` handler.

use diesel::prelude::*;
use outbox::{Context, HandlerError, Message, message_controller};
use outbox_diesel::consumer::FailurePolicy;
use outbox_diesel::schema::outbox_inbox;

use super::processes::committed;
use super::support::{
    Env, OnTopic, RunningConsumer, TIMEOUT, User, active_stops, quick_retries, relay_on, round,
    seq_of_user, users, wait_until,
};

const KEYS: i64 = 20;
const SEQS: i64 = 3;
const POISON: (i64, i64) = (7, 1);

/// Applies users; refuses user 7's update #1 with an error no retry fixes.
struct Ledger;

#[message_controller(model = User, table = users)]
impl Ledger {
    async fn before_update(
        &self,
        _ctx: &mut Context<'_>,
        user: User,
    ) -> Result<User, HandlerError> {
        if (user.id, user.seq) == POISON {
            return Err(HandlerError::permanent(format!(
                "the ledger cannot take user {} #{}",
                user.id, user.seq
            )));
        }
        Ok(user)
    }
}

diesel::table! {
    hooks (id) {
        id -> BigInt,
        user_id -> BigInt,
        hook -> Text,
        seen_seq -> Nullable<BigInt>,
    }
}

/// Another service: records the error events it is told about.
struct ErrorWatch;

#[message_controller(model = User, table = users)]
impl ErrorWatch {
    #[on("error.updated")]
    async fn update_failed(
        &self,
        ctx: &mut Context<'_>,
        message: &Message,
    ) -> Result<(), HandlerError> {
        let (_, error) = message.payload_for(&[1]).map_err(HandlerError::permanent)?;
        let key: i64 = error["key"]
            .as_str()
            .and_then(|key| key.parse().ok())
            .ok_or_else(|| HandlerError::permanent("an error event without a key"))?;
        let line = format!(
            "{}|{}|{}|{}|{}",
            message.event,
            error["kind"].as_str().unwrap_or_default(),
            error["error"].as_str().unwrap_or_default(),
            error["message_id"].as_str().unwrap_or_default(),
            error["offset"],
        );
        diesel_async::RunQueryDsl::execute(
            diesel::insert_into(hooks::table)
                .values((hooks::user_id.eq(key), hooks::hook.eq(line))),
            ctx.conn(),
        )
        .await?;
        Ok(())
    }
}

/// The failing record becomes one error event (written with its inbox row);
/// the partition goes on; a consumer handles the event; a record read again
/// by another group of the same service sends no second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_record_becomes_an_error_event_others_handle() {
    let env = Env::new("consumer_error_events");
    let errors = env.kafka.create_topic("errors", 1);
    let policy = quick_retries(FailurePolicy::error_event(&errors), 2);
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .producer_name("ledger")
            .controller_with(OnTopic::new(Ledger, &env.topic), policy.clone()),
    );
    let relay = env.relay();
    let mut producer = env.producer();
    let sent: Vec<Message> = (0..SEQS)
        .flat_map(|seq| producer.write(&round(1..=KEYS, seq)))
        .collect();
    let poisoned = sent
        .iter()
        .find(|m| {
            m.partition_key == POISON.0.to_string()
                && m.payloads.get(1).and_then(|p| p["seq"].as_i64()) == Some(POISON.1)
        })
        .expect("the poisoned message")
        .clone();
    let mut conn = env.consumer_conn();
    wait_until("every key reaches its last change", TIMEOUT, || {
        (1..=KEYS).all(|key| seq_of_user(&mut conn, key) == Some(SEQS - 1))
    })
    .await;
    assert!(
        active_stops(&mut conn, &env.group).is_empty(),
        "nothing stopped"
    );
    let claimed: i64 = outbox_inbox::table
        .filter(outbox_inbox::message_id.eq(poisoned.id.as_uuid()))
        .count()
        .get_result(&mut conn)
        .expect("read the inbox");
    assert_eq!(
        claimed, 1,
        "the failed record's inbox row went with its error event"
    );

    // The consumer's own relay publishes it; another service handles it.
    let consumer_relay = relay_on(env.consumer_db.url());
    let watcher_group = env.kafka.group("watcher");
    let watcher = RunningConsumer::spawn(
        env.consumer_in(&watcher_group)
            .controller(OnTopic::new(ErrorWatch, &errors)),
    );
    wait_until("the error event is handled", TIMEOUT, || {
        hooks::table
            .count()
            .get_result::<i64>(&mut conn)
            .expect("count hooks")
            >= 1
    })
    .await;
    let seen: Vec<(i64, String)> = hooks::table
        .select((hooks::user_id, hooks::hook))
        .load(&mut conn)
        .expect("read hooks");
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (key, line) = &seen[0];
    assert_eq!(*key, POISON.0);
    let fields: Vec<&str> = line.split('|').collect();
    assert_eq!(fields[0], "error.updated", "{line}");
    assert_eq!(fields[1], "handler", "{line}");
    assert!(
        fields[2].contains("the ledger cannot take user 7 #1"),
        "{line}"
    );
    assert_eq!(fields[3], poisoned.id.to_string(), "{line}");

    // Read again from the start in another group, on the same database: the
    // inbox has every record, the failed one too: no second error event.
    let again_group = env.kafka.group("again");
    let again = RunningConsumer::spawn(
        env.consumer_in(&again_group)
            .producer_name("ledger")
            .controller_with(OnTopic::new(Ledger, &env.topic), policy),
    );
    let total = sent.len() as i64;
    wait_until("the other group reads every record", TIMEOUT, || {
        committed(&env.kafka, &again_group, &env.topic)
            .iter()
            .map(|offset| offset.unwrap_or(0))
            .sum::<i64>()
            == total
    })
    .await;
    let report = again.stop().await;
    assert_eq!(report.error_events, 0, "{report:?}");
    assert_eq!(report.duplicates, total as u64, "{report:?}");

    let first = consumer.stop().await;
    assert_eq!(first.error_events, 1, "{first:?}");
    assert_eq!(first.failed, 1, "{first:?}");
    assert_eq!((first.stopped, first.dead_lettered), (0, 0), "{first:?}");
    let watched = watcher.stop().await;
    assert_eq!(watched.processed, 1, "{watched:?}");
    consumer_relay.stop().await;
    relay.stop().await;
}
