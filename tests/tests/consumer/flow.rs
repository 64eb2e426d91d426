//! The happy path and its variations: created → updated → destroyed reaching
//! the consumer with hooks in order, every record delivered twice and applied
//! once, and hooks that rewrite, refuse, and enqueue follow-ups.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use outbox::{
    Context, Event, HandlerError, Message, MessageId, Outboxed, kafka::decode_record,
    message_controller,
};
use outbox_diesel::consumer::FailurePolicy;
use outbox_diesel::schema::outbox_inbox;
use outbox_tests::{TopicReader, header};

use super::support::{
    Change, Env, OnTopic, PARTITIONS, PRODUCER, RunningConsumer, TIMEOUT, User, applied,
    assert_applied_once_in_order, count_applied, count_inbox, hooks_by_key, keys_on, log_apply,
    log_hook, quick_retries, relay_on, users, users_of, wait_until,
};

/// Records every hook it runs, with the row as the hook sees it, and logs
/// every apply; handles `password_reset` and ignores other custom events.
struct AuditedUsers;

#[message_controller(model = User, table = users)]
impl AuditedUsers {
    async fn before_create(&self, ctx: &mut Context<'_>, user: User) -> Result<User, HandlerError> {
        log_hook(ctx, user.id, "before_create").await?;
        Ok(user)
    }

    async fn after_create(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        log_hook(ctx, user.id, "after_create").await?;
        log_apply(ctx, user.id, Some(user.seq)).await
    }

    async fn before_update(&self, ctx: &mut Context<'_>, user: User) -> Result<User, HandlerError> {
        log_hook(ctx, user.id, "before_update").await?;
        Ok(user)
    }

    async fn after_update(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        log_hook(ctx, user.id, "after_update").await?;
        log_apply(ctx, user.id, Some(user.seq)).await
    }

    async fn before_destroy(
        &self,
        ctx: &mut Context<'_>,
        key: &<User as Outboxed>::Key,
    ) -> Result<(), HandlerError> {
        log_hook(ctx, *key, "before_destroy").await
    }

    async fn after_destroy(
        &self,
        ctx: &mut Context<'_>,
        key: &<User as Outboxed>::Key,
    ) -> Result<(), HandlerError> {
        log_hook(ctx, *key, "after_destroy").await?;
        log_apply(ctx, *key, None).await
    }

    #[on("password_reset")]
    async fn password_reset(
        &self,
        ctx: &mut Context<'_>,
        msg: &Message,
    ) -> Result<(), HandlerError> {
        let (_, payload) = msg
            .payload_for(User::VERSIONS)
            .map_err(HandlerError::permanent)?;
        let id = payload["id"]
            .as_i64()
            .ok_or_else(|| HandlerError::permanent("password_reset without an id"))?;
        log_hook(ctx, id, "password_reset").await?;
        log_apply(ctx, id, None).await
    }
}

/// 1. Created → updated → (password reset) → updated → destroyed over many keys,
/// through enqueue, relay and consumer: the consumer's table ends equal to the
/// producer's, every hook ran once, in order, before or after the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn created_updated_destroyed_reach_the_consumer_with_hooks_in_order() {
    const KEYS: i64 = 150;
    let started = Instant::now();
    let env = Env::new("consumer_lifecycle");
    let keys: Vec<i64> = (1..=KEYS).collect();
    let all = |f: &dyn Fn(i64) -> Option<Change>| keys.iter().filter_map(|k| f(*k)).collect();
    let waves: Vec<Vec<Change>> = vec![
        all(&|k| Some(Change::Create(User::new(k, 0)))),
        all(&|k| Some(Change::Update(User::new(k, 1)))),
        all(&|k| (k % 5 == 0).then(|| Change::Custom("password_reset", User::new(k, 1)))),
        // No handling: acknowledged and counted as ignored.
        all(&|k| (k % 7 == 0).then(|| Change::Custom("newsletter_opt_in", User::new(k, 1)))),
        all(&|k| Some(Change::Update(User::new(k, 2)))),
        all(&|k| (k % 3 == 0).then(|| Change::Destroy(User::new(k, 2)))),
    ];
    let ignored = waves[3].len() as u64;

    let consumer = RunningConsumer::spawn(
        env.consumer()
            .controller(OnTopic::new(AuditedUsers, &env.topic)),
    );
    let relay = env.relay();
    let mut producer = env.producer();
    let total: u64 = waves
        .iter()
        .map(|wave| producer.write(wave).len() as u64)
        .sum();

    let mut conn = env.consumer_conn();
    wait_until("every handled message is in the inbox", TIMEOUT, || {
        count_inbox(&mut conn) as u64 == total - ignored
    })
    .await;
    consumer.assert_running();
    let report = consumer.stop().await;
    relay.stop().await;
    eprintln!(
        "lifecycle: {total} messages applied in {:?}",
        started.elapsed()
    );

    assert_eq!(report.processed, total - ignored, "{report:?}");
    assert_eq!(report.ignored, ignored, "{report:?}");
    assert_eq!(
        (
            report.duplicates,
            report.failed,
            report.refused,
            report.stopped
        ),
        (0, 0, 0, 0),
        "{report:?}"
    );
    let expected = users_of(&mut producer.conn);
    assert_eq!(expected.len() as i64, KEYS - KEYS / 3);
    assert_eq!(users_of(&mut conn), expected, "the consumer's copy");

    let log = applied(&mut conn);
    assert_eq!(log.len() as u64, total - ignored);
    assert_applied_once_in_order(&log);
    // The inbox has each applied message: from whom, and where it was read.
    let mut inbox: Vec<(String, uuid::Uuid, String, i32, i64)> = outbox_inbox::table
        .select((
            outbox_inbox::source,
            outbox_inbox::message_id,
            outbox_inbox::topic,
            outbox_inbox::kafka_partition,
            outbox_inbox::kafka_offset,
        ))
        .load(&mut conn)
        .expect("read the inbox");
    inbox.sort_by_key(|row| (row.3, row.4));
    let mut from_log: Vec<(String, uuid::Uuid, String, i32, i64)> = log
        .iter()
        .map(|row| {
            let from = PRODUCER.to_owned();
            (
                from,
                row.message_id,
                env.topic.clone(),
                row.kafka_partition,
                row.kafka_offset,
            )
        })
        .collect();
    from_log.sort_by_key(|row| (row.3, row.4));
    assert_eq!(inbox, from_log);

    let hooks = hooks_by_key(&mut conn);
    assert_eq!(hooks.len() as i64, KEYS);
    for (key, ran) in hooks {
        let mut expected = vec![
            ("before_create", None),
            ("after_create", Some(0)),
            ("before_update", Some(0)),
            ("after_update", Some(1)),
        ];
        if key % 5 == 0 {
            expected.push(("password_reset", Some(1)));
        }
        expected.extend([("before_update", Some(1)), ("after_update", Some(2))]);
        if key % 3 == 0 {
            expected.extend([("before_destroy", Some(2)), ("after_destroy", None)]);
        }
        let ran: Vec<(&str, Option<i64>)> = ran.iter().map(|(h, s)| (h.as_str(), *s)).collect();
        assert_eq!(
            ran, expected,
            "hooks of key {key} (hook, seq of the row it saw)"
        );
    }
}

/// Logs every apply; created falls back to `after_update`.
struct LoggedUsers;

#[message_controller(model = User, table = users)]
impl LoggedUsers {
    async fn after_update(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        log_apply(ctx, user.id, Some(user.seq)).await
    }

    async fn after_destroy(&self, ctx: &mut Context<'_>, key: &i64) -> Result<(), HandlerError> {
        log_apply(ctx, *key, None).await
    }
}

/// 2. A second group on the same schema reads the topic from offset 0: every
/// record is delivered again, and every one is skipped as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_record_delivered_twice_is_applied_once() {
    const KEYS: i64 = 100;
    let env = Env::new("consumer_replay");
    let relay = env.relay();
    let mut producer = env.producer();
    let mut sent = Vec::new();
    for seq in 0..3 {
        let changes: Vec<Change> = (1..=KEYS)
            .map(|k| match seq {
                0 => Change::Create(User::new(k, 0)),
                _ => Change::Update(User::new(k, seq)),
            })
            .collect();
        sent.extend(producer.write(&changes));
    }
    let destroys: Vec<Change> = (1..=KEYS)
        .filter(|k| k % 4 == 0)
        .map(|k| Change::Destroy(User::new(k, 2)))
        .collect();
    sent.extend(producer.write(&destroys));
    let total = sent.len() as u64;

    let first = RunningConsumer::spawn(
        env.consumer()
            .controller(OnTopic::new(LoggedUsers, &env.topic)),
    );
    let mut conn = env.consumer_conn();
    wait_until("the first group applied everything", TIMEOUT, || {
        count_inbox(&mut conn) as u64 == total
    })
    .await;
    let first = first.stop().await;
    assert_eq!(first.processed, total, "{first:?}");
    assert_eq!(first.duplicates, 0, "{first:?}");
    assert_eq!(count_applied(&mut conn) as u64, total);

    // A new group: no committed offsets, so it reads every partition from 0.
    let replay_group = env.kafka.group("replay");
    let second = RunningConsumer::spawn(
        env.consumer_in(&replay_group)
            .controller(OnTopic::new(LoggedUsers, &env.topic)),
    );
    // One new key per partition, sent after everything else: once each is
    // applied, the replay group has been through its whole partition.
    let sentinels: Vec<i64> = (0..PARTITIONS)
        .map(|p| keys_on(p, 1_000_000, 1)[0])
        .collect();
    let creates: Vec<Change> = sentinels
        .iter()
        .map(|id| Change::Create(User::new(*id, 0)))
        .collect();
    producer.write(&creates);
    wait_until("the replay group reached the sentinels", TIMEOUT, || {
        users::table
            .filter(users::id.eq_any(&sentinels))
            .count()
            .get_result::<i64>(&mut conn)
            .expect("count the sentinels")
            == sentinels.len() as i64
    })
    .await;
    let second = second.stop().await;
    relay.stop().await;

    assert_eq!(second.duplicates, total, "every record again: {second:?}");
    assert_eq!(second.processed, sentinels.len() as u64, "{second:?}");
    assert_eq!((second.failed, second.ignored), (0, 0), "{second:?}");
    assert_applied_once_in_order(&applied(&mut conn));
    assert_eq!(users_of(&mut conn), users_of(&mut producer.conn));
    assert_eq!(
        count_inbox(&mut conn) as u64,
        total + sentinels.len() as u64
    );
}

/// What the importing service sends when it imports a user.
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "outbox_consumer_tests_welcomes", route = "welcomes")]
struct Welcome {
    id: i64,
    email: String,
}

/// Imports users: lowercases their email (refusing blocked domains) before
/// the write, and after an import enqueues a [`Welcome`], failing once for
/// the user named "flaky" after enqueueing it.
struct Importer {
    welcomes: Arc<Mutex<Vec<(i64, MessageId)>>>,
    flaky_attempts: AtomicU32,
}

#[message_controller(model = User, table = users)]
impl Importer {
    // Also runs for created: `before_create` defaults to it.
    async fn before_update(
        &self,
        _ctx: &mut Context<'_>,
        mut user: User,
    ) -> Result<User, HandlerError> {
        if user.email.ends_with("@blocked.example") {
            return Err(HandlerError::refuse(format!("user {} is blocked", user.id)));
        }
        user.email = user.email.to_lowercase();
        Ok(user)
    }

    async fn after_create(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        log_apply(ctx, user.id, Some(user.seq)).await?;
        let welcome = Welcome {
            id: user.id,
            email: user.email.clone(),
        };
        let id = ctx.enqueue(&welcome, Event::Created).await?;
        self.welcomes.lock().unwrap().push((user.id, id));
        if user.name.as_deref() == Some("flaky")
            && self.flaky_attempts.fetch_add(1, Ordering::SeqCst) == 0
        {
            return Err(HandlerError::retriable("the mailer is down"));
        }
        Ok(())
    }

    async fn after_update(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        log_apply(ctx, user.id, Some(user.seq)).await
    }
}

/// 6. A before hook rewrites records (lowercased email) and refuses one user
/// (not applied, counted refused); an after hook enqueues a follow-up that a
/// relay on the consumer's schema publishes; an after hook that fails after
/// enqueueing rolls the apply back, and that follow-up is never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hooks_rewrite_refuse_and_send_follow_ups_only_when_committed() {
    const USERS: i64 = 20;
    const BLOCKED: i64 = 21;
    const FLAKY: i64 = 22;
    let env = Env::new("consumer_hooks");
    env.kafka.ensure_shared_topic(Welcome::TOPIC, PARTITIONS);
    let mut welcomes_read = TopicReader::from_now(&env.kafka, Welcome::TOPIC);

    let mixed_case = |id: i64, seq: i64| User {
        email: format!("User{id}.Seq{seq}@Example.COM"),
        ..User::new(id, seq)
    };
    let mut creates: Vec<Change> = (1..=USERS)
        .map(|id| Change::Create(mixed_case(id, 0)))
        .collect();
    let blocked = User {
        email: "mallory@blocked.example".into(),
        ..User::new(BLOCKED, 0)
    };
    creates.push(Change::Create(blocked.clone()));
    creates.push(Change::Create(User {
        name: Some("flaky".into()),
        ..mixed_case(FLAKY, 0)
    }));
    let mut updates: Vec<Change> = (1..=5)
        .map(|id| Change::Update(mixed_case(id, 1)))
        .collect();
    updates.push(Change::Update(User { seq: 1, ..blocked }));

    let welcomes = Arc::new(Mutex::new(Vec::new()));
    let importer = Importer {
        welcomes: Arc::clone(&welcomes),
        flaky_attempts: AtomicU32::new(0),
    };
    let policy = quick_retries(FailurePolicy::stop(), 3);
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .controller_with(OnTopic::new(importer, &env.topic), policy)
            .producer_name("billing"),
    );
    let relay = env.relay();
    let follow_up_relay = relay_on(env.consumer_db.url());
    let mut producer = env.producer();
    let total = (producer.write(&creates).len() + producer.write(&updates).len()) as u64;

    let mut conn = env.consumer_conn();
    let refused = 2; // the blocked user's create and update
    wait_until("every accepted message is in the inbox", TIMEOUT, || {
        count_inbox(&mut conn) as u64 == total - refused
    })
    .await;
    // Each imported user's committed follow-up is the last one its hook
    // enqueued; any earlier one was rolled back with its transaction: the
    // flaky user's failed attempt, or a batch applied again without the
    // flaky record after it failed in it.
    let enqueued: Vec<(i64, MessageId)> = welcomes.lock().unwrap().clone();
    let mut last: std::collections::BTreeMap<i64, MessageId> = std::collections::BTreeMap::new();
    for (user, id) in &enqueued {
        last.insert(*user, *id);
    }
    assert_eq!(last.len() as i64, USERS + 1, "{enqueued:?}");
    let committed: Vec<MessageId> = last.values().copied().collect();
    let rolled_back: Vec<MessageId> = enqueued
        .iter()
        .map(|(_, id)| *id)
        .filter(|id| !committed.contains(id))
        .collect();
    assert!(
        enqueued.iter().filter(|(user, _)| *user == FLAKY).count() >= 2,
        "the flaky user's hook ran again after it failed: {enqueued:?}"
    );
    let wanted: std::collections::HashSet<String> =
        committed.iter().map(ToString::to_string).collect();
    welcomes_read
        .read_until("every committed follow-up", TIMEOUT, |records| {
            let seen: std::collections::HashSet<String> = records
                .iter()
                .filter_map(|r| header(r, outbox::headers::MESSAGE_ID))
                .filter(|id| wanted.contains(id))
                .collect();
            seen.len() == wanted.len()
        })
        .await;
    wait_until("the consumer's outbox is drained", TIMEOUT, || {
        outbox_diesel::schema::outbox_messages::table
            .count()
            .get_result::<i64>(&mut conn)
            .expect("count outbox_messages")
            == 0
    })
    .await;
    // Anything sent twice, or the rolled-back follow-up, would show up by now.
    welcomes_read.read_rest(Duration::from_secs(1)).await;
    let report = consumer.stop().await;
    relay.stop().await;
    let follow_up_report = follow_up_relay.stop().await;

    assert_eq!(report.refused, refused, "{report:?}");
    assert_eq!(report.processed, total - refused, "{report:?}");
    assert_eq!(report.retries, 1, "the flaky import, once: {report:?}");
    assert_eq!((report.failed, report.stopped), (0, 0), "{report:?}");
    assert_eq!(follow_up_report.published, committed.len() as u64);

    let imported = users_of(&mut conn);
    let mut expected = users_of(&mut producer.conn);
    expected.retain(|user| user.id != BLOCKED);
    for user in &mut expected {
        user.email = user.email.to_lowercase();
    }
    assert_eq!(
        imported, expected,
        "rewritten by the before hook, blocked left out"
    );
    assert!(imported.iter().any(|u| u.email == "user3.seq1@example.com"));

    let log = applied(&mut conn);
    assert_applied_once_in_order(&log);
    assert_eq!(
        log.iter().filter(|row| row.user_id == FLAKY).count(),
        1,
        "the failed attempt's log row was rolled back with it"
    );

    let mut sent: Vec<(MessageId, Message)> = Vec::new();
    for record in &welcomes_read.records {
        let message = decode_record(record).expect("a follow-up decodes");
        sent.push((message.id, message));
    }
    assert!(
        sent.iter().all(|(id, _)| !rolled_back.contains(id)),
        "a rolled-back follow-up was sent: {rolled_back:?}"
    );
    for id in &committed {
        let copies: Vec<&Message> = sent
            .iter()
            .filter(|(s, _)| s == id)
            .map(|(_, m)| m)
            .collect();
        assert_eq!(copies.len(), 1, "follow-up {id} sent once");
        let message = copies[0];
        assert_eq!(
            (message.from.as_str(), message.to.as_str(), &message.event),
            ("billing", "welcomes", &Event::Created)
        );
        let welcome = Welcome::from_payload(&message.event, 1, message.payloads.get(1).unwrap())
            .expect("a welcome");
        let user = imported
            .iter()
            .find(|u| u.id == welcome.id)
            .expect("a welcome for an imported user");
        assert_eq!(welcome.email, user.email.replace(".seq1", ".seq0"));
    }
}
