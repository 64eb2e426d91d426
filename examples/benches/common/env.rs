//! Settings from the environment and the command line.

/// Where `scripts/services.sh` starts PostgreSQL, unless `DATABASE_URL` says otherwise.
/// Without TLS: that cluster also serves TLS, which libpq's default `prefer` would pick
/// for one side of a comparison and not for a hand-written side on tokio-postgres.
const DEFAULT_DATABASE_URL: &str =
    "postgres://postgres@127.0.0.1:54329/outbox_test?sslmode=disable";
/// Where `scripts/services.sh` starts Kafka, unless `KAFKA_BROKERS` says otherwise.
const DEFAULT_BROKERS: &str = "127.0.0.1:59092";

/// The PostgreSQL server: `DATABASE_URL`, or the services script's.
pub(crate) fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into())
}

/// The Kafka brokers: `KAFKA_BROKERS`, or the services script's.
pub(crate) fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| DEFAULT_BROKERS.into())
}

/// The value of `name` (`_` allowed between digits: `200_000`), or `default`
/// when it is not set; panics on a value that does not parse.
pub(crate) fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a valid value")),
        Err(_) => default,
    }
}

/// The comma-separated values of `name`, trimmed, without empty ones (none
/// when it is not set).
pub(crate) fn env_list(name: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What to run, by name: the arguments that are not options (`cargo bench`
/// passes `--bench`), then the names listed in `var`.
pub(crate) fn named(args: &[String], var: &str) -> Vec<String> {
    args.iter()
        .map(|arg| arg.trim())
        .filter(|arg| !arg.starts_with('-') && !arg.is_empty())
        .map(str::to_owned)
        .chain(env_list(var))
        .collect()
}
