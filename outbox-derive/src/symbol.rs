//! The keys the macros understand.

pub(crate) const OUTBOX: &str = "outbox";
pub(crate) const DIESEL: &str = "diesel";

// #[outbox(..)] on the struct.
pub(crate) const TOPIC: &str = "topic";
pub(crate) const ROUTE: &str = "route";
pub(crate) const VERSIONS: &str = "versions";
pub(crate) const PARTITION_KEY: &str = "partition_key";
pub(crate) const PARTITION_KEY_WITH: &str = "partition_key_with";
pub(crate) const DESTROYED: &str = "destroyed";
pub(crate) const PAYLOAD_WITH: &str = "payload_with";
pub(crate) const AVRO: &str = "avro";
pub(crate) const FORMAT: &str = "format";
pub(crate) const CRATE: &str = "crate";

pub(crate) const CONTAINER_KEYS: &[&str] = &[
    TOPIC,
    ROUTE,
    VERSIONS,
    PARTITION_KEY,
    PARTITION_KEY_WITH,
    DESTROYED,
    PAYLOAD_WITH,
    AVRO,
    FORMAT,
    CRATE,
];

// Inside `avro(..)` on the struct.
pub(crate) const NAME: &str = "name";
pub(crate) const NAMESPACE: &str = "namespace";

pub(crate) const AVRO_KEYS: &[&str] = &[NAME, NAMESPACE];

// #[outbox(..)] on a field.
pub(crate) const SKIP: &str = "skip";
pub(crate) const RENAME: &str = "rename";
pub(crate) const SINCE: &str = "since";
pub(crate) const UNTIL: &str = "until";
pub(crate) const WITH: &str = "with";
pub(crate) const DEFAULT: &str = "default";
pub(crate) const AVRO_TYPE: &str = "avro_type";
pub(crate) const VERSION: &str = "version";

pub(crate) const FIELD_KEYS: &[&str] = &[
    SKIP, RENAME, SINCE, UNTIL, WITH, DEFAULT, AVRO_TYPE, VERSION,
];

// #[diesel(..)] keys the derive reads; it ignores the others.
pub(crate) const TABLE_NAME: &str = "table_name";
pub(crate) const PRIMARY_KEY: &str = "primary_key";
// On a field.
pub(crate) const COLUMN_NAME: &str = "column_name";
