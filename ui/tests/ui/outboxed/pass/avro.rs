//! `avro` in each form, `avro_type` in each form and from a `macro_rules!`
//! fragment: builds without a warning, and the schemas build.
#![deny(warnings)]

use outbox::Outboxed;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Active,
    Closed,
}

#[derive(Outboxed)]
#[outbox(topic = "billing.invoices-v2", route = "invoices", versions = [1, 2], avro)]
pub struct Invoice {
    pub id: i64,
    #[outbox(avro_type = "string")]
    pub number: String,
    #[outbox(with = chrono::serde::ts_milliseconds, avro_type = "timestamp-millis")]
    pub issued_at: chrono::DateTime<chrono::Utc>,
    #[outbox(avro_type = r#"{"type": "enum", "name": "Status", "symbols": ["active", "closed"]}"#)]
    status: Status,
    #[outbox(since = 2, default)]
    pub lines: Vec<String>,
    #[outbox(skip)]
    pub cache: std::sync::Mutex<u64>,
}

#[derive(Outboxed)]
#[outbox(topic = "billing", route = "payments", avro(name = "Payment", namespace = "com.acme.billing"))]
pub struct PaymentRow {
    pub id: i64,
}

/// Avro on the wire; `format = "avro"` implies `avro`, and `avro(..)` may name the record.
#[derive(Outboxed)]
#[outbox(topic = "billing", route = "credits", format = "avro", avro(name = "Credit"))]
pub struct CreditRow {
    pub id: i64,
}

#[derive(Outboxed)]
#[outbox(topic = "billing", route = "debits", format = "avro")]
pub struct Debit {
    pub id: i64,
}

#[derive(Outboxed)]
#[outbox(topic = "billing", route = "notes", format = "json")]
pub struct Note {
    pub id: i64,
}

#[derive(Outboxed)]
#[outbox(avro(namespace = "com.acme"))]
#[outbox(topic = "billing", route = "refunds")]
pub struct Refund {
    pub id: i64,
}

macro_rules! model {
    ($name:ident, $avro_type:literal, $ty:ty) => {
        #[derive(Outboxed)]
        #[outbox(topic = "generated", route = "generated", avro)]
        pub struct $name {
            pub id: i64,
            #[outbox(avro_type = $avro_type)]
            pub value: $ty,
        }
    };
}

model!(Generated, "long", i64);

fn main() {
    for schema in [
        Invoice::avro_schema(2),
        PaymentRow::avro_schema(1),
        Refund::avro_schema(1),
        Generated::avro_schema(1),
        CreditRow::avro_schema(1),
        Debit::avro_schema(1),
    ] {
        schema.expect("the schema builds");
    }
    assert_eq!(CreditRow::FORMAT, outbox::Format::Avro);
    assert_eq!(Debit::FORMAT, outbox::Format::Avro);
    assert_eq!(Note::FORMAT, outbox::Format::Json);
    assert!(Note::avro_schema(1).is_err());
    let _ = Invoice::json_schema(1).expect("the JSON Schema builds");
    let _ = Status::Active;
    let _ = Status::Closed;
}
