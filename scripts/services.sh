#!/usr/bin/env bash
# The project's services: a private PostgreSQL cluster, a KRaft Kafka of one node or three,
# and a Confluent-compatible schema registry (Apicurio Registry, in memory).
#
#   scripts/services.sh up [--brokers 1|3] [--only kafka|postgres|registry]
#                                install what is missing, start all three (or the one named),
#                                wait until they answer
#   scripts/services.sh down [--only kafka|postgres|registry]
#                                stop them (WIPE=1 also deletes their data and certificates, keeps
#                                the downloaded jars and registry distribution)
#   scripts/services.sh status   say what runs where; exit 1 if a service does not answer
#
# Faults on purpose, for the chaos run and outage tests (quiet on success, non-zero on error;
# they act on this script's own servers, whatever DATABASE_URL and KAFKA_BROKERS say):
#   scripts/services.sh kafka-node stop N [--signal TERM|KILL]   TERM (default) waits for the exit
#                                up to 30 s, then kills; KILL kills at once
#   scripts/services.sh kafka-node start N    returns when node N says it started and answers
#   scripts/services.sh kafka-node status N   exit 1 unless node N runs and answers
#   scripts/services.sh postgres restart fast|immediate   pg_ctl restart -m fast|immediate;
#                                returns when PostgreSQL answers again
#   scripts/services.sh reserve [postgres] [kafka] [registry]   take the ports of PG_PORT /
#                                KAFKA_PORT, KAFKA_CONTROLLER_PORT, KAFKA_SASL_PORT (all three
#                                nodes') / REGISTRY_PORT, REGISTRY_MGMT_PORT out of the kernel's
#                                ephemeral range, as `up` does for its own, for a server started
#                                later (needs root; says so otherwise)
#
# --brokers 3: three broker+controller nodes (node ids 1..3, all three voters) on this
# machine, node n on each port + 100 × (n - 1), heap KAFKA_CLUSTER_HEAP_OPTS each;
# default.replication.factor 3, min.insync.replicas 2 (internal topics alike), no unclean
# leader election. Without the flag, `up` keeps the node count Kafka's storage is formatted
# for (one when there is none yet), so a bare `up` never undoes `up --brokers 3`; only
# `--brokers N` with another count than the storage's stops Kafka and reformats it (test data).
# --only kafka|postgres|registry: start (or stop) that one alone (the cluster test's private
# Kafka needs no PostgreSQL); a bare `down` stops all three, `status` reports on all three.
#
# Idempotent and quick when already up. Data lives under target/services/ of the clone.
# If DATABASE_URL is set, that PostgreSQL is used and no cluster is started; likewise
# KAFKA_BROKERS for Kafka and SCHEMA_REGISTRY_URL (its Confluent-compatible base URL, whose
# `/subjects` must answer) for the registry. Settings (all optional): PG_PORT (54329), PG_DB
# (outbox_test), KAFKA_PORT (59092), KAFKA_CONTROLLER_PORT (59093), KAFKA_SASL_PORT (59094),
# KAFKA_VERSION (4.4.0), KAFKA_HEAP_OPTS ("-Xms256m -Xmx512m"), KAFKA_CLUSTER_HEAP_OPTS
# ("-Xms128m -Xmx384m"), SVC_DIR (target/services), KAFKA_JARS (target/services/kafka: the
# folder of the Kafka jars, shared by every SVC_DIR of the clone, so a second set of services,
# e.g. the cluster test's private one, downloads nothing).
#
# The schema registry: Apicurio Registry's `all` distribution from Maven Central (158 MB,
# fetched once with mvn into REGISTRY_DIST, target/services/registry, shared like KAFKA_JARS),
# run as one Java process with in-memory storage (every subject is gone when it stops), its
# Confluent API at http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7. Settings: REGISTRY_PORT
# (58086), REGISTRY_MGMT_PORT (58087, Quarkus' management interface), REGISTRY_VERSION (3.3.3
# when a Java 21 or newer is found, /usr/lib/jvm included, else 3.0.9 on Java 17),
# REGISTRY_JAVA (a java binary), REGISTRY_JAVA_OPTS ("-Xms64m -Xmx512m -XX:+UseSerialGC
# -XX:TieredStopAtLevel=1"). Its compatibility level is Apicurio's default, NONE (Confluent's
# is BACKWARD): tests set the level of their subjects.
#
# TLS and SASL, beside the plaintext listeners (tests that do not care keep using those):
# - $SVC_DIR/tls/ holds a test CA (ca.pem, ca.key), a server certificate signed by it
#   (server.pem, server.key; subjectAltName DNS:localhost, IP:127.0.0.1) and an unrelated CA
#   (other-ca.pem) for "untrusted certificate" tests. Made once with openssl; made anew when
#   a file is missing or a certificate expires within 30 days.
# - Kafka: a SASL_SSL listener on 127.0.0.1:$KAFKA_SASL_PORT, SCRAM-SHA-512, user `outbox`
#   with the fixed test password `outbox-secret` (created when the storage is formatted).
# - PostgreSQL: `ssl = on` on the same port, with that certificate (the cluster's
#   outbox-tls.conf); plain connections keep working. The role `outbox_tls_only` (LOGIN)
#   may connect only over TLS, so tests can show `sslmode=disable` refused.
# `up` prints the settings a client needs. When DATABASE_URL or KAFKA_BROKERS point
# elsewhere, the TLS parts of that service are not started here; the tests (outbox_tests::
# secure) then read: KAFKA_SASL_SSL_BROKERS, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD,
# KAFKA_SSL_CA_LOCATION (the CA file that signed the brokers' certificates) and
# DATABASE_URL_TLS (a `sslmode=verify-full&sslrootcert=...` URL).
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
KAFKA_SASL_PORT=${KAFKA_SASL_PORT:-59094}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:-"-Xms256m -Xmx512m"}
KAFKA_CLUSTER_HEAP_OPTS=${KAFKA_CLUSTER_HEAP_OPTS:-"-Xms128m -Xmx384m"} # each node of a cluster
KAFKA_NODES= # set by kafka_up (`--brokers N`, else the storage's count) and cmd_status
KDIR=$SVC_DIR/kafka
KAFKA_JARS=${KAFKA_JARS:-$ROOT/target/services/kafka}

REGISTRY_PORT=${REGISTRY_PORT:-58086}
REGISTRY_MGMT_PORT=${REGISTRY_MGMT_PORT:-58087}
REGISTRY_VERSION=${REGISTRY_VERSION:-} # empty: chosen by the Java found (registry_java)
REGISTRY_JAVA_OPTS=${REGISTRY_JAVA_OPTS:-"-Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"}
RDIR=$SVC_DIR/registry
REGISTRY_DIST=${REGISTRY_DIST:-$ROOT/target/services/registry}
# Marks the registry's JVM as ours (and for which folder) in its command line.
REGISTRY_MARK="-Doutbox.services.registry=$RDIR"

TLS_DIR=$SVC_DIR/tls
SASL_USER=outbox
SASL_PASSWORD=outbox-secret # a fixed test value; printed masked
TLS_ONLY_ROLE=outbox_tls_only
# Storage formatted with an older layout (e.g. without the SCRAM user) is test data: reformat.
KAFKA_LAYOUT="$KAFKA_VERSION scram-sha-512:$SASL_USER"

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

# Our ports lie inside Linux's ephemeral range (32768-60999): while a server is down, a
# client retrying it may be given that very port as its own and connect to itself (a TCP
# self-connection, seen here), and the server then cannot bind it when it starts again.
# Reserved ports are never handed out as ephemeral ones. The setting is system-wide: it is
# written only when one of our ports is missing, keeping what is there. Needs root for
# that; warns without only when asked (by `up`), not on every fault command.
reserve_ports() { # warn|quiet, services (postgres, kafka, registry)...
  local f=/proc/sys/net/ipv4/ip_local_reserved_ports mode=$1 want=() missing=() ranges=() p r n base covered current
  shift
  for p in "$@"; do
    case $p in
      postgres) want+=("$PG_PORT") ;;
      kafka) # every node's, also for one node: a later `up --brokers 3` needs them
        for n in 1 2 3; do
          for base in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SASL_PORT"; do want+=("$(node_port "$base" "$n")"); done
        done ;;
      registry) want+=("$REGISTRY_PORT" "$REGISTRY_MGMT_PORT") ;;
      *) die "reserve: unknown service '$p' (postgres, kafka or registry)" ;;
    esac
  done
  current=$(cat "$f" 2>/dev/null) || return 0
  IFS=, read -ra ranges <<<"$current"
  for p in "${want[@]}"; do
    covered=0
    for r in "${ranges[@]}"; do
      if [ "$p" -ge "${r%-*}" ] && [ "$p" -le "${r#*-}" ]; then covered=1; break; fi
    done
    [ $covered = 1 ] || missing+=("$p")
  done
  [ ${#missing[@]} != 0 ] || return 0
  # Read again and write under a lock: the kernel keeps a set, what is written replaces it.
  if ! { [ -w "$f" ] && (flock 5 && current=$(cat "$f") \
      && echo "${current:+$current,}$(IFS=,; echo "${missing[*]}")" >"$f") 5>"${TMPDIR:-/tmp}/outbox-reserved-ports.lock"; } 2>/dev/null
  then
    [ "$mode" != warn ] || say "services: could not reserve ports $(IFS=,; echo "${missing[*]}") ($f, needs root); a restarted server may find its port taken" >&2
  fi
}

# ---------------------------------------------------------------- TLS

tls_current() { # every file there, the server certificate from this CA, none expiring soon
  local f
  for f in ca.key ca.pem server.key server.pem other-ca.pem; do [ -s "$TLS_DIR/$f" ] || return 1; done
  for f in ca.pem server.pem other-ca.pem; do
    openssl x509 -checkend 2592000 -noout -in "$TLS_DIR/$f" >/dev/null 2>&1 || return 1
  done
  openssl verify -CAfile "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" >/dev/null 2>&1
}

tls_make_ca() { # dir, name, common name
  cat >"$1/$2.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = $3
[ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
CNF
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$1/$2.key" -out "$1/$2.pem" -days 3650 \
    -config "$1/$2.cnf" -extensions ext
}

tls_make_server() { # dir: a PKCS#8 key (Kafka's PEM keystore wants PKCS#8) and a certificate from ca
  cat >"$1/server.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
[ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
authorityKeyIdentifier = keyid
subjectKeyIdentifier = hash
CNF
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1/server.key"
  openssl req -new -key "$1/server.key" -config "$1/server.cnf" -out "$1/server.csr"
  openssl x509 -req -in "$1/server.csr" -CA "$1/ca.pem" -CAkey "$1/ca.key" -CAcreateserial -days 825 \
    -extfile "$1/server.cnf" -extensions ext -out "$1/server.pem"
}

# The CA and certificates, made once. Services holding older ones pick the new ones up on
# `up`: PostgreSQL by a reload, Kafka by a restart (both compare their copies).
tls_up() {
  command -v openssl >/dev/null || apt_install openssl
  mkdir -p "$SVC_DIR"
  exec 7>"$SVC_DIR/.tls.lock"; flock 7
  if ! tls_current; then
    say "services: making a test CA and certificates in $TLS_DIR"
    local tmp=$TLS_DIR.tmp
    rm -rf "$tmp" && mkdir -p "$tmp"
    { tls_make_ca "$tmp" ca "outbox test CA" && tls_make_server "$tmp" \
        && tls_make_ca "$tmp" other-ca "outbox unrelated test CA"; } >"$LOGS/tls.log" 2>&1 \
      || { show_log "$LOGS/tls.log"; die "making the test certificates failed"; }
    rm -f "$tmp"/*.csr "$tmp"/*.srl "$tmp"/*.cnf
    chmod 644 "$tmp"/*.pem && chmod 600 "$tmp"/*.key
    rm -rf "$TLS_DIR" && mv "$tmp" "$TLS_DIR"
  fi
  flock -u 7
}

# ---------------------------------------------------------------- PostgreSQL

# shellcheck disable=SC2012 # the folders are version numbers
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1; }

# Every folder above the cluster must be enterable by the cluster's owner; a clone under a
# private home (mode 700) is not, so fall back to a folder under the temporary directory.
pg_home() {
  local alt
  mkdir -p "$SVC_DIR" && chmod 755 "$SVC_DIR"
  if [ "$(id -u)" != 0 ] || runuser -u "$PG_USER" -- test -x "$SVC_DIR" 2>/dev/null; then
    echo "$SVC_DIR/postgres"
  else
    alt="${TMPDIR:-/tmp}/outbox-services-$(printf '%s' "$SVC_DIR" | cksum | cut -d' ' -f1)/postgres"
    say "services: $(dirname "$SVC_DIR") is not enterable by user $PG_USER; the cluster lives in $alt" >&2
    echo "$alt"
  fi
}

pg_url() { echo "postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB"; }
# Host `localhost`, the certificate's name, so that verify-full checks it.
pg_tls_url() { echo "postgres://postgres@localhost:$PG_PORT/$PG_DB?sslmode=verify-full&sslrootcert=$TLS_DIR/ca.pem"; }

# TLS for a cluster of ours, new or made before TLS was added: the certificate and key in the
# data folder (owned by the cluster's owner, mode 600, as PostgreSQL requires of a key), the
# settings in outbox-tls.conf included from postgresql.conf, and pg_hba.conf refusing the
# TLS-only role without TLS (first matching line wins, so above initdb's trust lines).
# Prints "changed" when the running server must reload.
pg_tls_config() { # data folder
  local data=$1 changed=0 owner=() tmp
  [ "$(id -u)" = 0 ] && owner=(-o "$PG_USER")
  if ! cmp -s "$TLS_DIR/server.pem" "$data/server.crt" || ! cmp -s "$TLS_DIR/server.key" "$data/server.key"; then
    install -m 600 "${owner[@]}" "$TLS_DIR/server.pem" "$data/server.crt"
    install -m 600 "${owner[@]}" "$TLS_DIR/server.key" "$data/server.key"
    changed=1
  fi
  tmp=$(mktemp)
  printf '%s\n' "# TLS for outbox's tests (written by scripts/services.sh)" "ssl = on" \
    "ssl_cert_file = 'server.crt'" "ssl_key_file = 'server.key'" >"$tmp"
  if ! cmp -s "$tmp" "$data/outbox-tls.conf"; then
    install -m 600 "${owner[@]}" "$tmp" "$data/outbox-tls.conf"; changed=1
  fi
  rm -f "$tmp"
  if ! grep -qx "include_if_exists = 'outbox-tls.conf'" "$data/postgresql.conf"; then
    echo "include_if_exists = 'outbox-tls.conf'" >>"$data/postgresql.conf"; changed=1
  fi
  if ! grep -q "$TLS_ONLY_ROLE" "$data/pg_hba.conf"; then
    { printf '%s\n' "# $TLS_ONLY_ROLE connects only over TLS (scripts/services.sh)" \
        "local     all  $TLS_ONLY_ROLE  reject" "hostnossl all  $TLS_ONLY_ROLE  all  reject"
      cat "$data/pg_hba.conf"; } >"$data/pg_hba.conf.new"
    cat "$data/pg_hba.conf.new" >"$data/pg_hba.conf" && rm -f "$data/pg_hba.conf.new"
    changed=1
  fi
  [ $changed = 0 ] || echo changed
}

# Runs a PostgreSQL program as the cluster's owner, from a folder it can enter ($home, the
# caller's): PostgreSQL refuses to run as root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then (cd "$home" && runuser -u "$PG_USER" -- "$@")
  else (cd "$home" && "$@"); fi
}

pg_wait() { # log, psql...: until the server answers a query, or dies with the end of its log
  local log=$1; shift
  local psql=("$@")
  for _ in $(seq 1 60); do
    "${psql[@]}" -d postgres -tAc 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  "${psql[@]}" -d postgres -tAc 'SELECT 1' >/dev/null 2>&1 || { show_log "$log"; die "PostgreSQL does not answer on 127.0.0.1:$PG_PORT"; }
}

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
    mkdir -p "$home" && chmod 755 "$home"
    install -d -o "$PG_USER" -m 700 "$data"
    install -d -o "$PG_USER" -m 755 "$sock"
    touch "$log" && chown "$PG_USER" "$log"
  else
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
full_page_writes = off
CONF
  fi
  local tls_changed
  tls_changed=$(pg_tls_config "$data")
  if ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    # Without the lock descriptors (here and wherever a server is started): a server outliving
    # a failed start would hold the lock, and the next `up` would wait for it forever.
    as_pg "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null 2>&1 6>&- 7>&- 8>&- 9>&- \
      || { show_log "$log"; die "PostgreSQL did not start"; }
  elif [ -n "$tls_changed" ]; then
    say "services: PostgreSQL reloads its TLS settings"
    as_pg "$bin/pg_ctl" -D "$data" reload >/dev/null 2>&1 || { show_log "$log"; die "PostgreSQL did not reload"; }
  fi
  local psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres)
  pg_wait "$log" "${psql[@]}"
  if [ "$("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
    "${psql[@]}" -d postgres -c "CREATE DATABASE \"$PG_DB\"" >/dev/null
  fi
  if [ "$("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$TLS_ONLY_ROLE'")" != 1 ]; then
    "${psql[@]}" -d postgres -c "CREATE ROLE $TLS_ONLY_ROLE LOGIN" >/dev/null
  fi
  # A commit returns once its WAL is written, so that it survives the server's crash or
  # an immediate restart (the chaos run's); fsync stays off (only an OS crash loses it).
  # With synchronous_commit off, as clusters made before had, 2 of 5 commits made just
  # before `postgres restart immediate` were gone.
  if [ "$("${psql[@]}" -d postgres -tAc 'SHOW synchronous_commit')" != on ]; then
    "${psql[@]}" -d postgres -c "ALTER SYSTEM SET synchronous_commit = on" -c "SELECT pg_reload_conf()" >/dev/null
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

# `postgres restart fast|immediate`: pg_ctl restart of this script's cluster with that
# shutdown mode (immediate: no checkpoint, crash recovery at start), returning once it
# answers again. Quiet on success.
pg_restart() { # fast|immediate
  [[ ${1:-} =~ ^(fast|immediate)$ ]] || die "usage: services.sh postgres restart fast|immediate"
  local bin home data log out
  bin=$(pg_bin); home=$(pg_home 2>/dev/null); data=$home/data; log=$home/postgres.log
  { [ -n "$bin" ] && as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; } \
    || die "no PostgreSQL of this script runs in $data: start it with scripts/services.sh up"
  exec 8>"$SVC_DIR/.postgres.lock"; flock 8
  # -l: the server started anew logs where it did; without it, it would hold our stdout.
  # Without the lock descriptors: see pg_up.
  out=$(as_pg "$bin/pg_ctl" -D "$data" -l "$log" -m "$1" -w -t 60 restart 2>&1 6>&- 7>&- 8>&- 9>&-) \
    || { printf '%s\n' "$out" >&2; show_log "$log"; die "PostgreSQL did not restart (-m $1)"; }
  pg_wait "$log" "$bin/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres
  flock -u 8
}

pg_answers() { # url
  command -v psql >/dev/null || return 1
  psql -X -q "$1" -tAc 'SELECT 1' >/dev/null 2>&1
}

pg_answers_tls() { # url: answers, and the session is encrypted
  command -v psql >/dev/null || return 1
  [ "$(psql -X -q "$1" -tAc 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()' 2>/dev/null)" = t ]
}

# ---------------------------------------------------------------- Kafka
#
# N KRaft nodes, each a broker and a controller (`up --brokers N`; 1 by default). Node n
# listens on each base port + 100 × (n - 1): node 1 on 59092/59093/59094, node 2 on
# 59192/59193/59194, node 3 on 59292/59293/59294. Node 1 lives in $KDIR (data,
# server.properties, kafka.pid; log $LOGS/kafka.log), node n in $KDIR/node-n (log
# $LOGS/kafka-n.log). $KDIR/nodes records how many nodes the storage was formatted for.

node_port() { echo $(($1 + 100 * ($2 - 1))); } # base port, node
node_dir() { if [ "$1" = 1 ]; then echo "$KDIR"; else echo "$KDIR/node-$1"; fi; }
node_log() { if [ "$1" = 1 ]; then echo "$LOGS/kafka.log"; else echo "$LOGS/kafka-$1.log"; fi; }
node_list() { # node count, base port: 127.0.0.1:port of each node, comma separated
  local n out=()
  for n in $(seq 1 "$1"); do out+=("127.0.0.1:$(node_port "$2" "$n")"); done
  (IFS=,; echo "${out[*]}")
}

# pid: it runs (a zombie does not); for a pid of ours, before the child has become java too
proc_runs() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]; }
kafka_alive() { grep -qs 'kafka.Kafka' "/proc/$1/cmdline"; } # pid: a node (a zombie's cmdline is empty)

node_ports_open() { # node: one of its ports still accepts connections
  local port
  for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SASL_PORT"; do
    port_open 127.0.0.1 "$(node_port "$port" "$1")" && return 0
  done
  return 1
}

# node, pid: exited, its sockets closed too (a dying JVM's cmdline empties before its
# hundred threads have closed the sockets they share)
kafka_exited() { ! kafka_alive "$2" && ! node_ports_open "$1"; }

kafka_pid() { # [node, 1 by default]: prints the pid of our node if it runs
  local pid dir
  dir=$(node_dir "${1:-1}")
  [ -s "$dir/kafka.pid" ] || return 1
  pid=$(cat "$dir/kafka.pid")
  kafka_alive "$pid" && echo "$pid"
}

kafka_formatted_nodes() { # how many nodes the storage is formatted for; nothing when none is
  if [ -s "$KDIR/nodes" ]; then cat "$KDIR/nodes"
  elif [ -f "$KDIR/data/meta.properties" ]; then echo 1 # formatted before clusters existed
  fi
}

kafka_known_nodes() { # every node with a folder here, running or not
  local d
  echo 1
  for d in "$KDIR"/node-*; do [ -d "$d" ] && echo "${d##*/node-}"; done
}

kafka_java_opts() { # node count
  local heap=$KAFKA_HEAP_OPTS gc=(-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35)
  if [ "$1" -gt 1 ]; then
    # Three JVMs share two cores: small heaps, the serial collector (no GC threads) and the
    # C1 compiler only. Measured on 2 busy cores: a node restarts in ~7 s this way, 10-20 s
    # with G1 (few threads or default) and C2; RSS ~310-350 MB in every variant.
    heap=$KAFKA_CLUSTER_HEAP_OPTS
    gc=(-XX:+UseSerialGC -XX:TieredStopAtLevel=1)
  fi
  # shellcheck disable=SC2206 # the heap options are meant to split
  JAVA_OPTS=($heap -server "${gc[@]}" -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$KDIR/log4j2.properties" -Dkafka.logs.dir="$LOGS")
}

# A node's settings for a cluster of `count` nodes, and the PEM keystore all nodes share
# (PKCS#8 key, then the certificate chain), written as .next files; kafka_up compares them
# with the running nodes'. One node bootstraps its own quorum (formatted --standalone);
# a cluster lists its voters.
kafka_config() { # node, node count
  local n=$1 count=$2 dir quorum rf=1 min_isr=1 voters=() i
  dir=$(node_dir "$n")
  quorum="controller.quorum.bootstrap.servers=127.0.0.1:$(node_port "$KAFKA_CONTROLLER_PORT" 1)"
  if [ "$count" -gt 1 ]; then
    for i in $(seq 1 "$count"); do voters+=("$i@127.0.0.1:$(node_port "$KAFKA_CONTROLLER_PORT" "$i")"); done
    quorum="controller.quorum.voters=$(IFS=,; echo "${voters[*]}")"
    rf=3 min_isr=2
  fi
  mkdir -p "$dir"
  sed -e "s|@NODE_ID@|$n|g" -e "s|@QUORUM@|$quorum|g" -e "s|@RF@|$rf|g" -e "s|@MIN_ISR@|$min_isr|g" \
    -e "s|@KAFKA_PORT@|$(node_port "$KAFKA_PORT" "$n")|g" \
    -e "s|@KAFKA_CONTROLLER_PORT@|$(node_port "$KAFKA_CONTROLLER_PORT" "$n")|g" \
    -e "s|@KAFKA_SASL_PORT@|$(node_port "$KAFKA_SASL_PORT" "$n")|g" -e "s|@KEYSTORE@|$KDIR/keystore.pem|g" \
    -e "s|@DATA@|$dir/data|g" "$ROOT/scripts/kafka/server.properties" >"$dir/server.properties.next"
}

kafka_keystore() {
  (umask 077 && cat "$TLS_DIR/server.key" "$TLS_DIR/server.pem" "$TLS_DIR/ca.pem" >"$KDIR/keystore.pem.next")
}

kafka_current() { # node: it runs with today's settings, keystore and storage layout
  local dir
  dir=$(node_dir "$1")
  cmp -s "$dir/server.properties.next" "$dir/server.properties" \
    && cmp -s "$KDIR/keystore.pem.next" "$KDIR/keystore.pem" \
    && [ "$(cat "$KDIR/data.version" 2>/dev/null)" = "$KAFKA_LAYOUT" ]
}

# sets KAFKA_LIBS: Java, and the jars from Maven Central resolved by the project's pom, once
# per version in $KAFKA_JARS, which every SVC_DIR of the clone shares (under its own lock:
# two sets of services may start at once).
kafka_libs() {
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then apt_install openjdk-17-jre-headless maven; fi
  local jmajor
  jmajor=$(java_major java)
  [ "${jmajor:-0}" -ge 17 ] || die "Kafka $KAFKA_VERSION needs Java 17 or newer, found ${jmajor:-none}"
  KAFKA_LIBS=$KAFKA_JARS/libs-$KAFKA_VERSION
  [ ! -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ] || return 0
  mkdir -p "$KAFKA_JARS"
  exec 6>"$KAFKA_JARS/.jars.lock"; flock 6
  if [ ! -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]; then
    say "services: resolving Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_JARS"
    rm -rf "$KAFKA_LIBS.tmp"
    mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS.tmp" >"$LOGS/kafka-mvn.log" 2>&1 \
      || { show_log "$LOGS/kafka-mvn.log"; die "could not resolve the Kafka jars"; }
    mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
  fi
  exec 6>&-
}

# Every node's storage with one cluster id and the SCRAM user (each node's bootstrap
# metadata holds it), and the layout and node count beside it.
kafka_format() { # node count
  local count=$1 cluster_id n mode=() pids=() failed=0
  [ "$count" = 1 ] && mode=(--standalone) # a cluster's voters are in its settings
  cluster_id=$(java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>"$LOGS/kafka-format.log") \
    || { show_log "$LOGS/kafka-format.log"; die "kafka StorageTool random-uuid failed"; }
  kafka_java_opts "$count"
  for n in $(seq 1 "$count"); do
    java "${JAVA_OPTS[@]}" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format "${mode[@]}" --ignore-formatted \
      -t "$cluster_id" -c "$(node_dir "$n")/server.properties" \
      --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]" >"$LOGS/kafka-format-$n.log" 2>&1 \
      6>&- 7>&- 8>&- 9>&- &
    pids+=($!)
  done
  for n in $(seq 1 "$count"); do
    wait "${pids[$((n - 1))]}" || { show_log "$LOGS/kafka-format-$n.log"; failed=1; }
  done
  cat "$LOGS"/kafka-format-*.log >"$LOGS/kafka-format.log" && rm -f "$LOGS"/kafka-format-*.log
  [ $failed = 0 ] || die "formatting Kafka storage failed"
  echo "$KAFKA_LAYOUT" >"$KDIR/data.version"
  echo "$count" >"$KDIR/nodes"
}

kafka_wipe() { # every node's storage (test data)
  local n
  for n in $(kafka_known_nodes); do rm -rf "$(node_dir "$n")/data"; done
  rm -rf "$KDIR"/node-* "$KDIR/data.version" "$KDIR/nodes"
}

kafka_launch() { # node, node count: starts it detached
  local dir log port
  dir=$(node_dir "$1"); log=$(node_log "$1")
  ! node_ports_open "$1" || die "Kafka node $1: one of its ports is taken by a process this script did not start"
  # The previous run's log is kept beside it (kafka.log.1), for a test that failed
  # before the restart; the new one starts empty, so "started" below is this run's.
  if [ -s "$log" ]; then mv -f "$log" "$log.1"; fi
  : >"$log"
  kafka_java_opts "$2"
  # Without the locks' descriptors: a node outliving a failed start must not hold a lock.
  setsid nohup java "${JAVA_OPTS[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties" \
    >>"$log" 2>&1 </dev/null 6>&- 7>&- 8>&- 9>&- &
  echo $! >"$dir/kafka.pid"
}

kafka_node_ready() { # node: it says it started and answers on both client ports
  grep -q 'Kafka Server started' "$(node_log "$1")" \
    && port_open 127.0.0.1 "$(node_port "$KAFKA_PORT" "$1")" && port_open 127.0.0.1 "$(node_port "$KAFKA_SASL_PORT" "$1")"
}

kafka_wait() { # seconds, nodes...: until each is ready; dies when one exits or time runs out
  local limit=$1 started=$SECONDS n left; shift
  while :; do
    left=()
    for n in "$@"; do
      proc_runs "$(cat "$(node_dir "$n")/kafka.pid")" || { show_log "$(node_log "$n")"; die "Kafka node $n exited during start-up"; }
      kafka_node_ready "$n" || left+=("$n")
    done
    [ ${#left[@]} = 0 ] && return 0
    if [ $((SECONDS - started)) -ge "$limit" ]; then
      for n in "${left[@]}"; do show_log "$(node_log "$n")"; done
      die "Kafka node(s) ${left[*]} not ready within $limit s (a cluster's node waits for a quorum: two of three running)"
    fi
    set -- "${left[@]}"
    sleep 0.25
  done
}

kafka_stop() { # TERM|KILL, nodes...: signals them all at once, waits until each has exited
  local signal=$1 n pid pids=() nodes=() waited=0; shift
  for n in "$@"; do
    if pid=$(kafka_pid "$n"); then kill "-$signal" "$pid"; pids+=("$pid"); nodes+=("$n")
    else rm -f "$(node_dir "$n")/kafka.pid"; fi
  done
  for i in "${!pids[@]}"; do
    # TERM: a controlled shutdown, bounded; KILL: gone as soon as the kernel has reaped it.
    while ! kafka_exited "${nodes[$i]}" "${pids[$i]}" && [ $waited -lt 300 ]; do sleep 0.1; waited=$((waited + 1)); done
    if ! kafka_exited "${nodes[$i]}" "${pids[$i]}"; then
      say "kafka: node ${nodes[$i]} did not stop in 30 s, killing ${pids[$i]}" >&2
      kill -KILL "${pids[$i]}" 2>/dev/null || true
      for _ in $(seq 1 100); do kafka_exited "${nodes[$i]}" "${pids[$i]}" && break; sleep 0.1; done
      kafka_exited "${nodes[$i]}" "${pids[$i]}" || die "Kafka node ${nodes[$i]} (pid ${pids[$i]}) does not exit"
    fi
    rm -f "$(node_dir "${nodes[$i]}")/kafka.pid"
  done
}

kafka_stop_all() { # every node with a folder here, at once
  local nodes
  mapfile -t nodes < <(kafka_known_nodes)
  kafka_stop TERM "${nodes[@]}"
}

kafka_up() { # node count asked (`--brokers N`), or nothing: sets KAFKA_NODES
  local count formatted n restart=() start=()
  mkdir -p "$KDIR"
  exec 9>"$KDIR/.lock"; flock 9
  # No count asked: the storage's, so that a bare `up` (tests, quickstart, recovery advice)
  # never reformats a cluster into one node.
  formatted=$(kafka_formatted_nodes)
  count=${1:-${formatted:-1}}
  KAFKA_NODES=$count
  if [ -z "$1" ] && [ "$count" != 1 ]; then
    say "services: Kafka keeps the $count nodes its storage is formatted for (\`up --brokers 1\` for one node)"
  fi
  if port_open 127.0.0.1 "$KAFKA_PORT" && ! kafka_pid 1 >/dev/null; then
    # Another checkout's broker on the same port: use it as it is.
    say "services: Kafka already answers on 127.0.0.1:$KAFKA_PORT (not started here); using it"
    port_open 127.0.0.1 "$KAFKA_SASL_PORT" \
      || say "services: it has no listener on 127.0.0.1:$KAFKA_SASL_PORT; SASL_SSL tests will fail" >&2
    flock -u 9; return 0
  fi

  # Storage formatted for another node count than asked, by a newer Kafka (unreadable by an
  # older one), or without the SCRAM user (no way in over SASL_SSL) is test data: reformat.
  if [ -n "$formatted" ] && [ "$formatted" != "$count" ]; then
    say "services: Kafka is formatted for $formatted node(s), $count asked: stopping it and reformatting its storage (test data)"
    kafka_stop_all
    kafka_wipe
  elif [ -n "$formatted" ] && [ "$(cat "$KDIR/data.version" 2>/dev/null)" != "$KAFKA_LAYOUT" ]; then
    say "services: reformatting Kafka's storage (test data) for: $KAFKA_LAYOUT"
    kafka_stop_all
    kafka_wipe
  else
    for n in $(seq 1 "$count"); do
      [ -f "$(node_dir "$n")/data/meta.properties" ] && continue
      [ -n "$formatted" ] && say "services: Kafka node $n has no storage: reformatting the cluster's (test data)"
      kafka_stop_all
      kafka_wipe
      break
    done
  fi

  # Storage formatted before the count was recorded has one node.
  [ ! -f "$KDIR/data/meta.properties" ] || [ -s "$KDIR/nodes" ] || echo 1 >"$KDIR/nodes"

  kafka_keystore
  for n in $(seq 1 "$count"); do
    kafka_config "$n" "$count"
    if kafka_pid "$n" >/dev/null; then kafka_current "$n" || restart+=("$n"); fi
  done
  if [ ${#restart[@]} != 0 ]; then
    say "services: restarting Kafka node(s) ${restart[*]} for new settings (listeners, certificate or storage layout)"
    kafka_stop TERM "${restart[@]}"
  fi
  for n in $(seq 1 "$count"); do kafka_pid "$n" >/dev/null || start+=("$n"); done
  [ ${#start[@]} != 0 ] || { flock -u 9; return 0; }

  kafka_libs
  for n in "${start[@]}"; do mv "$(node_dir "$n")/server.properties.next" "$(node_dir "$n")/server.properties"; done
  mv "$KDIR/keystore.pem.next" "$KDIR/keystore.pem"
  cp "$ROOT/scripts/kafka/log4j2.properties" "$KDIR/log4j2.properties"
  [ -f "$KDIR/data/meta.properties" ] || kafka_format "$count"

  local started=$SECONDS
  for n in "${start[@]}"; do kafka_launch "$n" "$count"; done
  kafka_wait 120 "${start[@]}"
  if [ "$count" = 1 ]; then say "services: Kafka ready in $((SECONDS - started)) s"
  else say "services: Kafka node(s) ${start[*]} of $count ready in $((SECONDS - started)) s"; fi
  flock -u 9
}

kafka_down() {
  mkdir -p "$KDIR"
  exec 9>"$KDIR/.lock"; flock 9
  local n running=0
  for n in $(kafka_known_nodes); do kafka_pid "$n" >/dev/null && running=1; done
  # All at once: a cluster's last nodes would otherwise wait for a quorum to shut down.
  kafka_stop_all
  [ $running = 0 ] || say "kafka: stopped"
  if [ "${WIPE:-0}" = 1 ]; then kafka_wipe; fi
  flock -u 9
}

# One node of ours: `kafka-node stop N [--signal TERM|KILL]`, `kafka-node start N`,
# `kafka-node status N`. Quiet on success.
kafka_node() { # action, node, [--signal TERM|KILL]
  local action=${1:-} n=${2:-} signal=TERM count
  [ $# -ge 2 ] || die "usage: services.sh kafka-node stop N [--signal TERM|KILL] | start N | status N"
  shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      --signal) signal=${2:-}; shift 2 || die "--signal takes TERM or KILL" ;;
      *) die "kafka-node: unknown argument '$1'" ;;
    esac
  done
  [[ $signal =~ ^(TERM|KILL)$ ]] || die "--signal takes TERM or KILL, not '$signal'"
  [ "$action" = stop ] || [ "$signal" = TERM ] || die "--signal goes with stop only"
  count=$(kafka_formatted_nodes)
  [ -n "$count" ] || die "no Kafka storage in $KDIR: start the services with scripts/services.sh up first"
  { [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le "$count" ]; } \
    || die "kafka-node: node '$n' does not exist; the cluster has node(s) 1..$count"
  case "$action" in
    stop)
      exec 9>"$KDIR/.lock"; flock 9
      kafka_stop "$signal" "$n"
      flock -u 9 ;;
    start)
      exec 9>"$KDIR/.lock"; flock 9
      [ -s "$(node_dir "$n")/server.properties" ] || die "Kafka node $n has no settings: run scripts/services.sh up first"
      if ! kafka_pid "$n" >/dev/null; then
        kafka_libs
        kafka_launch "$n" "$count"
      fi
      kafka_wait 120 "$n"
      flock -u 9 ;;
    status)
      local pid
      if pid=$(kafka_pid "$n") && kafka_node_ready "$n"; then
        say "kafka node $n: up 127.0.0.1:$(node_port "$KAFKA_PORT" "$n") (pid $pid)"
      elif [ -n "$pid" ]; then
        say "kafka node $n: starting (pid $pid)"; return 1
      else
        say "kafka node $n: down"; return 1
      fi ;;
    *) die "kafka-node: unknown action '$action' (stop, start or status)" ;;
  esac
}

kafka_answers() { # host:port list, comma separated
  local first=${1%%,*}
  port_open "${first%:*}" "${first##*:}"
}

kafka_answers_tls() { # host:port list, CA file: a TLS handshake whose certificate verifies
  local first=${1%%,*} host check
  host=${first%:*}
  command -v openssl >/dev/null || return 1
  # -verify_ip / -verify_hostname: the name check librdkafka makes too. No CA file: the
  # system's CAs (a managed service's public certificate).
  check=(-verify_hostname "$host")
  [[ $host =~ ^[0-9.]+$ ]] && check=(-verify_ip "$host")
  [ -z "$2" ] || check+=(-CAfile "$2")
  timeout 10 openssl s_client -connect "$first" "${check[@]}" -verify_return_error </dev/null >/dev/null 2>&1
}

# How a client reaches the SASL_SSL listener, password masked (it is SASL_PASSWORD above).
kafka_sasl_settings() { # CA file
  echo "-X security.protocol=SASL_SSL -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=$SASL_USER" \
    "-X sasl.password=*** -X ssl.ca.location=$1"
}

# ---------------------------------------------------------------- schema registry
#
# Apicurio Registry (its Confluent-compatible API at /apis/ccompat/v7), a Quarkus app run as
# one JVM with in-memory storage: nothing to format, nothing kept. Its distribution lives in
# $REGISTRY_DIST/apicurio-<version>, fetched once; its pid in $RDIR/registry.pid, its log in
# $LOGS/registry.log (the previous run's in registry.log.1).

registry_url() { echo "http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"; }

registry_answers() { # base URL: GET <url>/subjects answers 2xx
  command -v curl >/dev/null || return 1
  curl -sf -o /dev/null --max-time 10 "${1%/}/subjects"
}

registry_alive() { grep -qs -- "$REGISTRY_MARK" "/proc/$1/cmdline"; } # pid: our registry's JVM

registry_pid() { # prints the pid of our registry if it runs
  local pid
  [ -s "$RDIR/registry.pid" ] || return 1
  pid=$(cat "$RDIR/registry.pid")
  registry_alive "$pid" && echo "$pid"
}

registry_ports_open() { port_open 127.0.0.1 "$REGISTRY_PORT" || port_open 127.0.0.1 "$REGISTRY_MGMT_PORT"; }

java_major() { # java binary: its major version, nothing when it does not run
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | cut -d. -f1
}

# Sets REGISTRY_VERSION (when not given) and REGISTRY_JAVA_BIN: Apicurio 3.1 and later are built
# for Java 21; 3.0.x runs on Java 17. The first Java new enough wins: REGISTRY_JAVA, JAVA_HOME's,
# the PATH's, then those under /usr/lib/jvm (Debian 12 has no Java 21; this machine kind ships
# a Temurin 25 there).
registry_java() {
  local j major need candidates=()
  if ! command -v java >/dev/null && ! ls /usr/lib/jvm/*/bin/java >/dev/null 2>&1; then
    apt_install openjdk-17-jre-headless
  fi
  [ -z "${REGISTRY_JAVA:-}" ] || candidates+=("$REGISTRY_JAVA")
  [ -z "${JAVA_HOME:-}" ] || candidates+=("$JAVA_HOME/bin/java")
  command -v java >/dev/null && candidates+=("$(command -v java)")
  for j in /usr/lib/jvm/*/bin/java; do candidates+=("$j"); done
  need=21
  case $REGISTRY_VERSION in 3.0.*|2.*) need=17 ;; esac
  for j in "${candidates[@]}"; do
    [ -x "$j" ] || continue
    major=$(java_major "$j")
    if [ "${major:-0}" -ge "$need" ]; then
      REGISTRY_JAVA_BIN=$j; REGISTRY_VERSION=${REGISTRY_VERSION:-3.3.3}; return 0
    fi
    if [ -z "$REGISTRY_VERSION" ] && [ "${major:-0}" -ge 17 ]; then REGISTRY_JAVA_BIN=$j; fi
  done
  if [ -z "$REGISTRY_VERSION" ] && [ -n "${REGISTRY_JAVA_BIN:-}" ]; then
    REGISTRY_VERSION=3.0.9; return 0 # no Java 21: the last Apicurio that runs on Java 17
  fi
  die "Apicurio Registry ${REGISTRY_VERSION:-3.3.3} needs Java $need or newer, and none was found" \
    "(REGISTRY_JAVA, JAVA_HOME, PATH, /usr/lib/jvm); REGISTRY_VERSION=3.0.9 runs on Java 17"
}

# Sets REGISTRY_JAR: the runnable jar of REGISTRY_VERSION, fetched from Maven Central once
# (the `all` tarball of io.apicurio:apicurio-registry-app: the ready-to-run Quarkus app; the
# plain jar does not start), under the dist folder's own lock (two sets of services may start
# at once).
registry_dist() {
  local dist=$REGISTRY_DIST/apicurio-$REGISTRY_VERSION started scratch
  if [ ! -f "$dist/.complete" ]; then
    command -v mvn >/dev/null || apt_install maven
    mkdir -p "$REGISTRY_DIST"
    exec 6>"$REGISTRY_DIST/.dist.lock"; flock 6
    if [ ! -f "$dist/.complete" ]; then
      say "services: fetching Apicurio Registry $REGISTRY_VERSION (158 MB) from Maven Central into $REGISTRY_DIST"
      started=$SECONDS
      rm -rf "$dist.tmp" && mkdir -p "$dist.tmp"
      # mvn runs in a scratch folder: outside a project it leaves marker folders in the
      # working folder, and a stale marker makes a later unpack skip silently.
      scratch=$(mktemp -d)
      (cd "$scratch" && mvn -q -B dependency:unpack \
          -Dartifact="io.apicurio:apicurio-registry-app:$REGISTRY_VERSION:tar.gz:all" \
          -DoutputDirectory="$dist.tmp") >"$LOGS/registry-mvn.log" 2>&1 \
        || { rm -rf "$scratch"; show_log "$LOGS/registry-mvn.log"; die "could not fetch Apicurio Registry $REGISTRY_VERSION"; }
      rm -rf "$scratch" "$dist"
      mv "$dist.tmp" "$dist" && touch "$dist/.complete"
      say "services: fetched Apicurio Registry $REGISTRY_VERSION in $((SECONDS - started)) s"
    fi
    exec 6>&-
  fi
  # 3.1 and later: a Quarkus fast-jar (quarkus-run.jar); 3.0: a *-runner.jar beside lib/.
  REGISTRY_JAR=$dist/quarkus-run.jar
  if [ ! -f "$REGISTRY_JAR" ]; then
    REGISTRY_JAR=$(find "$dist" -maxdepth 1 -name '*-runner.jar' | head -n1)
    [ -n "$REGISTRY_JAR" ] || die "no runnable jar in $dist (remove the folder to fetch it again)"
  fi
}

registry_wait() { # pid, seconds: until the registry answers; dies when it exits or time runs out
  local pid=$1 limit=$2 started=$SECONDS url
  url=$(registry_url)
  until registry_answers "$url"; do
    proc_runs "$pid" || { show_log "$LOGS/registry.log"; die "the schema registry exited during start-up"; }
    if [ $((SECONDS - started)) -ge "$limit" ]; then
      show_log "$LOGS/registry.log"; die "the schema registry does not answer on $url within $limit s"
    fi
    sleep 0.25
  done
}

registry_up() {
  local pid started url
  url=$(registry_url)
  mkdir -p "$RDIR"
  exec 4>"$RDIR/.lock"; flock 4
  if pid=$(registry_pid); then
    # Ours runs (a second `up` while it starts waits here too).
    registry_wait "$pid" 120
    flock -u 4; return 0
  fi
  if registry_ports_open; then
    # Another checkout's registry on the same port: use it as it is.
    registry_answers "$url" || die "127.0.0.1:$REGISTRY_PORT or $REGISTRY_MGMT_PORT is taken by a process" \
      "this script did not start, and $url/subjects does not answer (REGISTRY_PORT, REGISTRY_MGMT_PORT)"
    say "services: a schema registry already answers on 127.0.0.1:$REGISTRY_PORT (not started here); using it"
    flock -u 4; return 0
  fi
  command -v curl >/dev/null || apt_install curl
  registry_java
  registry_dist
  if [ -s "$LOGS/registry.log" ]; then mv -f "$LOGS/registry.log" "$LOGS/registry.log.1"; fi
  : >"$LOGS/registry.log"
  started=$SECONDS
  # In-memory H2 storage (Apicurio's default, said here so that no other default applies);
  # both listeners on the loopback (the management one defaults to 0.0.0.0:9000). Without the
  # locks' descriptors: a registry outliving a failed start must not hold a lock.
  # shellcheck disable=SC2086 # the Java options are meant to split
  (cd "$RDIR" && exec setsid nohup "$REGISTRY_JAVA_BIN" $REGISTRY_JAVA_OPTS "$REGISTRY_MARK" \
      -Djava.awt.headless=true -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$REGISTRY_PORT" \
      -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$REGISTRY_MGMT_PORT" \
      -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2 \
      -jar "$REGISTRY_JAR" >>"$LOGS/registry.log" 2>&1 </dev/null 4>&- 6>&- 7>&- 8>&- 9>&-) &
  pid=$!
  echo "$pid" >"$RDIR/registry.pid"
  registry_wait "$pid" 120
  say "services: schema registry (Apicurio $REGISTRY_VERSION, Java $(java_major "$REGISTRY_JAVA_BIN")) ready in $((SECONDS - started)) s"
  flock -u 4
}

# TERM (Quarkus stops gracefully), KILL after 20 s; returns once it has exited and closed its ports.
registry_down() {
  local pid
  [ -d "$RDIR" ] || return 0
  exec 4>"$RDIR/.lock"; flock 4
  if pid=$(registry_pid); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 200); do
      ! registry_alive "$pid" && ! registry_ports_open && break
      sleep 0.1
    done
    if registry_alive "$pid"; then
      say "registry: did not stop in 20 s, killing $pid" >&2
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do registry_alive "$pid" || break; sleep 0.1; done
      ! registry_alive "$pid" || die "the schema registry (pid $pid) does not exit"
    fi
    say "registry: stopped"
  fi
  rm -f "$RDIR/registry.pid"
  flock -u 4
}

# ---------------------------------------------------------------- commands

need_build_deps() {
  # Diesel's PostgreSQL backend links libpq, even against a server elsewhere; librdkafka
  # is built with OpenSSL (found through pkg-config) for SSL and SASL_SSL.
  local missing=()
  [ -e /usr/include/postgresql/libpq-fe.h ] || missing+=(libpq-dev)
  [ -e /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  [ ${#missing[@]} = 0 ] || apt_install "${missing[@]}"
}

mask_url() { sed -E 's#(://[^:/@]*:)[^@/]*@#\1***@#'<<<"$1"; } # hides a password in a URL

# The TLS URL and SASL_SSL brokers tests use: ours, or the given ones when the service is not ours.
tls_pg_url() { if [ -n "${DATABASE_URL:-}" ]; then echo "${DATABASE_URL_TLS:-}"; else pg_tls_url; fi; }
tls_brokers() { if [ -n "${KAFKA_BROKERS:-}" ]; then echo "${KAFKA_SASL_SSL_BROKERS:-}"; else node_list "$KAFKA_NODES" "$KAFKA_SASL_PORT"; fi; }
tls_ca() { if [ -n "${KAFKA_BROKERS:-}" ]; then echo "${KAFKA_SSL_CA_LOCATION:-}"; else echo "$TLS_DIR/ca.pem"; fi; }

# service: the one `--only` named, or any without `--only` (reads the calling command's $only)
wants() { [ -z "$only" ] || [ "$only" = "$1" ]; }

cmd_up() { # [--brokers N] [--only kafka|postgres|registry]
  local asked='' only='' tls_url brokers ca reserve=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --brokers) asked=${2:-}; shift 2 || die "--brokers takes 1 or 3" ;;
      --only) only=${2:-}; shift 2 || die "--only takes kafka, postgres or registry" ;;
      *) die "up: unknown argument '$1' (usage: services.sh up [--brokers 1|3] [--only kafka|postgres|registry])" ;;
    esac
  done
  [ -z "$asked" ] || [[ $asked =~ ^[13]$ ]] || die "--brokers takes 1 or 3, not '$asked'"
  [ -z "$only" ] || [[ $only =~ ^(kafka|postgres|registry)$ ]] || die "--only takes kafka, postgres or registry, not '$only'"
  [ -z "$only" ] || [ "$only" = kafka ] || [ -z "$asked" ] || die "--brokers is for Kafka, which --only $only leaves alone"
  mkdir -p "$LOGS"
  ! wants postgres || [ -n "${DATABASE_URL:-}" ] || reserve+=(postgres)
  ! wants kafka || [ -n "${KAFKA_BROKERS:-}" ] || reserve+=(kafka)
  ! wants registry || [ -n "${SCHEMA_REGISTRY_URL:-}" ] || reserve+=(registry)
  reserve_ports warn "${reserve[@]}"
  if [ "$only" != registry ]; then
    need_build_deps
    tls_up # also when both services are given: tests use other-ca.pem
  fi
  if wants postgres; then
    if [ -n "${DATABASE_URL:-}" ]; then
      pg_answers "$DATABASE_URL" || die "DATABASE_URL=$(mask_url "$DATABASE_URL") does not answer"
      say "DATABASE_URL=$(mask_url "$DATABASE_URL") (given)"
    else
      pg_up
      say "DATABASE_URL=$(pg_url)"
    fi
    tls_url=$(tls_pg_url)
    if [ -z "$tls_url" ]; then
      say "DATABASE_URL_TLS is not set: the PostgreSQL TLS tests will fail (see this script's header)"
    elif pg_answers_tls "$tls_url"; then
      say "DATABASE_URL_TLS=$(mask_url "$tls_url")${DATABASE_URL:+ (given)}"
    else
      say "services: no verified TLS session with DATABASE_URL_TLS=$(mask_url "$tls_url"); the TLS tests will fail" >&2
    fi
  fi
  if wants kafka; then
    if [ -n "${KAFKA_BROKERS:-}" ]; then
      kafka_answers "$KAFKA_BROKERS" || die "KAFKA_BROKERS=$KAFKA_BROKERS does not answer"
      say "KAFKA_BROKERS=$KAFKA_BROKERS (given)"
    else
      kafka_up "$asked"
      say "KAFKA_BROKERS=$(node_list "$KAFKA_NODES" "$KAFKA_PORT")"
    fi
    brokers=$(tls_brokers); ca=$(tls_ca)
    if [ -z "$brokers" ]; then
      say "KAFKA_SASL_SSL_BROKERS is not set: the Kafka SASL_SSL tests will fail (see this script's header)"
    elif ! kafka_answers_tls "$brokers" "$ca"; then
      say "services: no verified TLS handshake with $brokers (CA ${ca:-of the system}); the SASL_SSL tests will fail" >&2
    elif [ -n "${KAFKA_BROKERS:-}" ]; then
      say "KAFKA_SASL_SSL_BROKERS=$brokers (given; with KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CA_LOCATION)"
    else
      say "KAFKA_SASL_SSL_BROKERS=$brokers  ($(kafka_sasl_settings "$ca"))"
      say "  sasl.password is the fixed test password in scripts/services.sh (SASL_PASSWORD)"
    fi
  fi
  if wants registry; then
    if [ -n "${SCHEMA_REGISTRY_URL:-}" ]; then
      command -v curl >/dev/null || apt_install curl
      registry_answers "$SCHEMA_REGISTRY_URL" \
        || die "SCHEMA_REGISTRY_URL=$(mask_url "$SCHEMA_REGISTRY_URL") does not answer (GET /subjects there)"
      say "SCHEMA_REGISTRY_URL=$(mask_url "$SCHEMA_REGISTRY_URL") (given)"
    else
      registry_up
      say "SCHEMA_REGISTRY_URL=$(registry_url)"
    fi
  fi
}

cmd_down() { # [--only kafka|postgres|registry]
  local only=''
  while [ $# -gt 0 ]; do
    case "$1" in
      --only) only=${2:-}; shift 2 || die "--only takes kafka, postgres or registry" ;;
      *) die "down: unknown argument '$1' (usage: services.sh down [--only kafka|postgres|registry])" ;;
    esac
  done
  [ -z "$only" ] || [[ $only =~ ^(kafka|postgres|registry)$ ]] || die "--only takes kafka, postgres or registry, not '$only'"
  # The reverse of `up`'s order.
  if wants registry && [ -z "${SCHEMA_REGISTRY_URL:-}" ]; then registry_down; fi
  if wants kafka && [ -z "${KAFKA_BROKERS:-}" ]; then kafka_down; fi
  if wants postgres && [ -z "${DATABASE_URL:-}" ]; then pg_down; fi
  if [ "${WIPE:-0}" = 1 ] && [ -z "$only" ]; then rm -rf "$TLS_DIR"; fi
}

cmd_status() {
  local ok=0 url brokers tls_url tls_brokers ca n pid registry
  KAFKA_NODES=$(kafka_formatted_nodes); KAFKA_NODES=${KAFKA_NODES:-1}
  url=${DATABASE_URL:-$(pg_url)}
  brokers=${KAFKA_BROKERS:-$(node_list "$KAFKA_NODES" "$KAFKA_PORT")}
  tls_url=$(tls_pg_url); tls_brokers=$(tls_brokers); ca=$(tls_ca)
  registry=${SCHEMA_REGISTRY_URL:-$(registry_url)}
  line() { printf '%-17s %-5s %s\n' "$@"; }
  if pg_answers "$url"; then line postgres: up "DATABASE_URL=$(mask_url "$url")"
  else line postgres: down "($(mask_url "$url"))"; ok=1; fi
  if [ -z "$tls_url" ]; then line "postgres (TLS):" "-" "DATABASE_URL_TLS not set"
  elif pg_answers_tls "$tls_url"; then line "postgres (TLS):" up "DATABASE_URL_TLS=$(mask_url "$tls_url")"
  else line "postgres (TLS):" down "($(mask_url "$tls_url"))"; ok=1; fi
  if [ -n "${KAFKA_BROKERS:-}" ] || [ "$KAFKA_NODES" = 1 ]; then
    if kafka_answers "$brokers"; then
      line kafka: up "KAFKA_BROKERS=$brokers$(pid=$(kafka_pid) && echo " (pid $pid)")"
    else
      line kafka: down "($brokers)"; ok=1
    fi
  else
    local nodes=() up=0
    for n in $(seq 1 "$KAFKA_NODES"); do
      if pid=$(kafka_pid "$n") && kafka_node_ready "$n"; then
        nodes+=("$(line "  node $n:" up "127.0.0.1:$(node_port "$KAFKA_PORT" "$n") (pid $pid)")"); up=$((up + 1))
      else
        nodes+=("$(line "  node $n:" down "(127.0.0.1:$(node_port "$KAFKA_PORT" "$n"))")"); ok=1
      fi
    done
    line kafka: "$([ "$up" = "$KAFKA_NODES" ] && echo up || echo down)" \
      "KAFKA_BROKERS=$brokers ($up of $KAFKA_NODES nodes up)"
    printf '%s\n' "${nodes[@]}"
  fi
  if [ -z "$tls_brokers" ]; then line "kafka (SASL_SSL):" "-" "KAFKA_SASL_SSL_BROKERS not set"
  elif kafka_answers_tls "$tls_brokers" "$ca"; then
    line "kafka (SASL_SSL):" up "KAFKA_SASL_SSL_BROKERS=$tls_brokers (certificate verified with $ca)"
  else line "kafka (SASL_SSL):" down "($tls_brokers, CA ${ca:-not set})"; ok=1; fi
  pid=
  [ -n "${SCHEMA_REGISTRY_URL:-}" ] || pid=$(registry_pid) || true
  if registry_answers "$registry"; then
    line registry: up "SCHEMA_REGISTRY_URL=$(mask_url "$registry")${pid:+ (pid $pid)}"
  elif [ -n "$pid" ]; then
    line registry: down "($registry; pid $pid runs but does not answer)"; ok=1
  else
    line registry: down "($(mask_url "$registry"))"; ok=1
  fi
  return $ok
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  status) cmd_status ;;
  kafka-node) shift; mkdir -p "$LOGS"; reserve_ports quiet kafka; kafka_node "$@" ;;
  reserve) shift; [ $# -gt 0 ] || set -- postgres kafka registry; reserve_ports warn "$@" ;;
  postgres)
    [ "${2:-}" = restart ] || die "usage: services.sh postgres restart fast|immediate"
    mkdir -p "$LOGS"; reserve_ports quiet postgres; pg_restart "${3:-}" ;;
  *)
    echo "usage: $0 up [--brokers 1|3] [--only kafka|postgres|registry] | down [--only kafka|postgres|registry] | status | kafka-node stop|start|status N | postgres restart fast|immediate | reserve [postgres] [kafka] [registry]" >&2
    exit 2 ;;
esac
