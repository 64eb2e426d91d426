#!/usr/bin/env bash
# The project's services: a private PostgreSQL cluster and a single-node KRaft Kafka broker.
#
#   scripts/services.sh up       install what is missing, start both, wait until they answer
#   scripts/services.sh down     stop both (WIPE=1 also deletes their data, keeps jars)
#   scripts/services.sh status   say what runs where; exit 1 if a service does not answer
#
# Idempotent and quick when already up. Data lives under target/services/ of the clone.
# If DATABASE_URL is set, that PostgreSQL is used and no cluster is started; likewise
# KAFKA_BROKERS for Kafka. Settings (all optional): PG_PORT (54329), PG_DB (outbox_test),
# KAFKA_PORT (59092), KAFKA_CONTROLLER_PORT (59093), KAFKA_VERSION (4.4.0),
# KAFKA_HEAP_OPTS ("-Xms256m -Xmx512m"), SVC_DIR (target/services).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SVC_DIR=${SVC_DIR:-$ROOT/target/services}
LOGS=$SVC_DIR/logs

PG_PORT=${PG_PORT:-54329}
PG_DB=${PG_DB:-outbox_test}
PG_USER=postgres # the Debian package creates this system user; postgres refuses to run as root

KAFKA_VERSION=${KAFKA_VERSION:-4.4.0}
LOG4J_VERSION=${LOG4J_VERSION:-2.25.5}
KAFKA_PORT=${KAFKA_PORT:-59092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-59093}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:-"-Xms256m -Xmx512m"}
KDIR=$SVC_DIR/kafka

say() { printf '%s\n' "$*"; }
die() { printf 'services: %s\n' "$*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
show_log() { # file, title
  if [ -s "$1" ]; then printf -- '--- last lines of %s ---\n' "$1" >&2; tail -n 40 "$1" >&2; fi
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root to run: $*"; fi
}

apt_install() { # packages...
  say "services: installing $* from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq >"$LOGS/apt.log" 2>&1 || { show_log "$LOGS/apt.log"; die "apt-get update failed"; }
  as_root apt-get install -y -qq "$@" >>"$LOGS/apt.log" 2>&1 || { show_log "$LOGS/apt.log"; die "apt-get install $* failed"; }
}

# ---------------------------------------------------------------- PostgreSQL

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1; }

# Every folder above the cluster must be enterable by the cluster's owner; a clone under a
# private home (mode 700) is not, so fall back to a folder under the temporary directory.
pg_home() {
  local want=$SVC_DIR/postgres
  mkdir -p "$SVC_DIR" && chmod 755 "$SVC_DIR"
  if [ "$(id -u)" != 0 ] || runuser -u "$PG_USER" -- test -x "$SVC_DIR" 2>/dev/null; then
    echo "$want"
  else
    local alt="${TMPDIR:-/tmp}/outbox-services-$(printf '%s' "$SVC_DIR" | cksum | cut -d' ' -f1)/postgres"
    say "services: $(dirname "$SVC_DIR") is not enterable by user $PG_USER; the cluster lives in $alt" >&2
    echo "$alt"
  fi
}

pg_url() { echo "postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB"; }

pg_up() {
  local psql_any=(psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres)
  if ! [ -s "$(pg_home 2>/dev/null)/data/postmaster.pid" ] && command -v psql >/dev/null \
    && "${psql_any[@]}" -tAc 'SELECT 1' >/dev/null 2>&1; then
    # Another checkout's cluster (or any PostgreSQL with trust auth) already serves this port.
    say "services: PostgreSQL already answers on 127.0.0.1:$PG_PORT (not started here); using it"
    if [ "$("${psql_any[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
      "${psql_any[@]}" -c "CREATE DATABASE \"$PG_DB\"" >/dev/null
    fi
    return 0
  fi
  if ! ls -d /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then apt_install postgresql libpq-dev; fi
  local bin home data sock log
  bin=$(pg_bin); home=$(pg_home); data=$home/data; sock=$home/sock; log=$home/postgres.log
  if [ "$(id -u)" = 0 ]; then
    id "$PG_USER" >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash "$PG_USER"
    as_pg() { (cd "$home" && runuser -u "$PG_USER" -- "$@"); }
    mkdir -p "$home" && chmod 755 "$home"
    install -d -o "$PG_USER" -m 700 "$data"
    install -d -o "$PG_USER" -m 755 "$sock"
    touch "$log" && chown "$PG_USER" "$log"
  else
    as_pg() { (cd "$home" && "$@"); }
    mkdir -p "$data" "$sock" && chmod 700 "$data" && touch "$log"
  fi
  exec 8>"$SVC_DIR/.postgres.lock"; flock 8

  if [ ! -s "$data/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$LOGS/initdb.log" 2>&1 \
      || { show_log "$LOGS/initdb.log"; die "initdb failed"; }
    ln -sf "$log" "$LOGS/postgres.log" 2>/dev/null || true
    cat >>"$data/postgresql.conf" <<CONF
# --- outbox test cluster ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$sock'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  fi
  if ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null 2>&1 \
      || { show_log "$log"; die "PostgreSQL did not start"; }
  fi
  local psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres)
  for _ in $(seq 1 60); do
    "${psql[@]}" -d postgres -tAc 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.5
  done
  "${psql[@]}" -d postgres -tAc 'SELECT 1' >/dev/null 2>&1 || { show_log "$log"; die "PostgreSQL does not answer on 127.0.0.1:$PG_PORT"; }
  if [ "$("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
    "${psql[@]}" -d postgres -c "CREATE DATABASE \"$PG_DB\"" >/dev/null
  fi
  flock -u 8
}

pg_down() {
  local home data bin
  home=$(pg_home 2>/dev/null); data=$home/data; bin=$(pg_bin)
  [ -s "$data/postmaster.pid" ] && [ -n "$bin" ] || return 0
  local owner; owner=$(stat -c %U "$data")
  if [ "$(id -u)" = 0 ]; then
    (cd "$home" && runuser -u "$owner" -- "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null) || true
  else
    "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null || true
  fi
  say "postgres: stopped"
  if [ "${WIPE:-0}" = 1 ]; then rm -rf "$home"; fi
}

pg_answers() { # url
  command -v psql >/dev/null || return 1
  psql -X -q "$1" -tAc 'SELECT 1' >/dev/null 2>&1
}

# ---------------------------------------------------------------- Kafka

kafka_pid() { # prints the pid of our broker if it runs
  local pid
  [ -s "$KDIR/kafka.pid" ] || return 1
  pid=$(cat "$KDIR/kafka.pid")
  grep -qs 'kafka.Kafka' "/proc/$pid/cmdline" && echo "$pid"
}

kafka_java_opts() {
  # shellcheck disable=SC2206 # the heap options are meant to split
  JAVA_OPTS=($KAFKA_HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$KDIR/log4j2.properties" -Dkafka.logs.dir="$LOGS")
}

kafka_up() {
  mkdir -p "$KDIR"
  exec 9>"$KDIR/.lock"; flock 9
  if port_open 127.0.0.1 "$KAFKA_PORT"; then
    # Ours, or another checkout's broker on the same port: use it either way.
    kafka_pid >/dev/null || say "services: Kafka already answers on 127.0.0.1:$KAFKA_PORT (not started here); using it"
    flock -u 9; return 0
  fi

  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then apt_install openjdk-17-jre-headless maven; fi
  local jmajor
  jmajor=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | cut -d. -f1)
  [ "${jmajor:-0}" -ge 17 ] || die "Kafka $KAFKA_VERSION needs Java 17 or newer, found ${jmajor:-none}"

  # Jars from Maven Central, resolved by the project's pom (once per version).
  local libs=$KDIR/libs-$KAFKA_VERSION
  if [ ! -f "$libs/kafka_2.13-$KAFKA_VERSION.jar" ]; then
    say "services: resolving Kafka $KAFKA_VERSION jars from Maven Central"
    rm -rf "$libs.tmp"
    mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs.tmp" >"$LOGS/kafka-mvn.log" 2>&1 \
      || { show_log "$LOGS/kafka-mvn.log"; die "could not resolve the Kafka jars"; }
    mv "$libs.tmp" "$libs"
  fi

  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
    -e "s|@DATA@|$KDIR/data|g" "$ROOT/scripts/kafka/server.properties" >"$KDIR/server.properties"
  cp "$ROOT/scripts/kafka/log4j2.properties" "$KDIR/log4j2.properties"
  kafka_java_opts

  # Storage formatted by a newer Kafka is unreadable by an older one: this is test data,
  # so reformat when the version changes.
  if [ -f "$KDIR/data/meta.properties" ] && [ "$(cat "$KDIR/data.version" 2>/dev/null)" != "$KAFKA_VERSION" ]; then
    rm -rf "$KDIR/data"
  fi
  if [ ! -f "$KDIR/data/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>"$LOGS/kafka-format.log") \
      || { show_log "$LOGS/kafka-format.log"; die "kafka StorageTool random-uuid failed"; }
    java "${JAVA_OPTS[@]}" -cp "$libs/*" kafka.tools.StorageTool format --standalone --ignore-formatted \
      -t "$cluster_id" -c "$KDIR/server.properties" >"$LOGS/kafka-format.log" 2>&1 \
      || { show_log "$LOGS/kafka-format.log"; die "formatting Kafka storage failed"; }
    echo "$KAFKA_VERSION" >"$KDIR/data.version"
  fi

  local log=$LOGS/kafka.log
  : >"$log"
  setsid nohup java "${JAVA_OPTS[@]}" -cp "$libs/*" kafka.Kafka "$KDIR/server.properties" >>"$log" 2>&1 </dev/null &
  echo $! >"$KDIR/kafka.pid"
  local started=$SECONDS
  for _ in $(seq 1 240); do
    if ! kafka_pid >/dev/null; then show_log "$log"; die "Kafka exited during start-up"; fi
    if grep -q 'Kafka Server started' "$log" && port_open 127.0.0.1 "$KAFKA_PORT"; then
      say "services: Kafka ready in $((SECONDS - started)) s"
      flock -u 9; return 0
    fi
    sleep 0.25
  done
  show_log "$log"; die "Kafka did not answer on 127.0.0.1:$KAFKA_PORT within 60 s"
}

kafka_down() {
  local pid
  pid=$(kafka_pid) || { rm -f "$KDIR/kafka.pid"; return 0; }
  kill -TERM "$pid"
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then say "kafka: did not stop in 30 s, killing $pid" >&2; kill -KILL "$pid"; fi
  rm -f "$KDIR/kafka.pid"
  say "kafka: stopped"
  if [ "${WIPE:-0}" = 1 ]; then rm -rf "$KDIR/data" "$KDIR/data.version"; fi
}

kafka_answers() { # host:port list, comma separated
  local first=${1%%,*}
  port_open "${first%:*}" "${first##*:}"
}

# ---------------------------------------------------------------- commands

need_build_deps() {
  # Diesel's PostgreSQL backend links libpq, even against a server elsewhere.
  if [ ! -e /usr/include/postgresql/libpq-fe.h ]; then apt_install libpq-dev; fi
}

cmd_up() {
  mkdir -p "$LOGS"
  need_build_deps
  if [ -n "${DATABASE_URL:-}" ]; then
    pg_answers "$DATABASE_URL" || die "DATABASE_URL=$DATABASE_URL does not answer"
    say "DATABASE_URL=$DATABASE_URL (given)"
  else
    pg_up
    say "DATABASE_URL=$(pg_url)"
  fi
  if [ -n "${KAFKA_BROKERS:-}" ]; then
    kafka_answers "$KAFKA_BROKERS" || die "KAFKA_BROKERS=$KAFKA_BROKERS does not answer"
    say "KAFKA_BROKERS=$KAFKA_BROKERS (given)"
  else
    kafka_up
    say "KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
  fi
}

cmd_down() {
  [ -n "${KAFKA_BROKERS:-}" ] || kafka_down
  [ -n "${DATABASE_URL:-}" ] || pg_down
}

cmd_status() {
  local ok=0 url brokers
  url=${DATABASE_URL:-$(pg_url)}
  brokers=${KAFKA_BROKERS:-127.0.0.1:$KAFKA_PORT}
  if pg_answers "$url"; then say "postgres: up    DATABASE_URL=$url"; else say "postgres: down  ($url)"; ok=1; fi
  if kafka_answers "$brokers"; then
    say "kafka:    up    KAFKA_BROKERS=$brokers$(pid=$(kafka_pid) && echo " (pid $pid)")"
  else
    say "kafka:    down  ($brokers)"; ok=1
  fi
  return $ok
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
