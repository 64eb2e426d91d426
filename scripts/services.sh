#!/usr/bin/env bash
# The project's services: a private PostgreSQL cluster and a single-node KRaft Kafka broker.
#
#   scripts/services.sh up       install what is missing, start both, wait until they answer
#   scripts/services.sh down     stop both (WIPE=1 also deletes their data and certificates, keeps jars)
#   scripts/services.sh status   say what runs where; exit 1 if a service does not answer
#
# Idempotent and quick when already up. Data lives under target/services/ of the clone.
# If DATABASE_URL is set, that PostgreSQL is used and no cluster is started; likewise
# KAFKA_BROKERS for Kafka. Settings (all optional): PG_PORT (54329), PG_DB (outbox_test),
# KAFKA_PORT (59092), KAFKA_CONTROLLER_PORT (59093), KAFKA_SASL_PORT (59094),
# KAFKA_VERSION (4.4.0), KAFKA_HEAP_OPTS ("-Xms256m -Xmx512m"), SVC_DIR (target/services).
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
KDIR=$SVC_DIR/kafka

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
  local tls_changed
  tls_changed=$(pg_tls_config "$data")
  if ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null 2>&1 \
      || { show_log "$log"; die "PostgreSQL did not start"; }
  elif [ -n "$tls_changed" ]; then
    say "services: PostgreSQL reloads its TLS settings"
    as_pg "$bin/pg_ctl" -D "$data" reload >/dev/null 2>&1 || { show_log "$log"; die "PostgreSQL did not reload"; }
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
  if [ "$("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$TLS_ONLY_ROLE'")" != 1 ]; then
    "${psql[@]}" -d postgres -c "CREATE ROLE $TLS_ONLY_ROLE LOGIN" >/dev/null
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

pg_answers_tls() { # url: answers, and the session is encrypted
  command -v psql >/dev/null || return 1
  [ "$(psql -X -q "$1" -tAc 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()' 2>/dev/null)" = t ]
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

# The broker's settings and PEM keystore (PKCS#8 key, then the certificate chain), written
# as .next files; kafka_up compares them with the running broker's.
kafka_config() {
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
    -e "s|@KAFKA_SASL_PORT@|$KAFKA_SASL_PORT|g" -e "s|@KEYSTORE@|$KDIR/keystore.pem|g" \
    -e "s|@DATA@|$KDIR/data|g" "$ROOT/scripts/kafka/server.properties" >"$KDIR/server.properties.next"
  (umask 077 && cat "$TLS_DIR/server.key" "$TLS_DIR/server.pem" "$TLS_DIR/ca.pem" >"$KDIR/keystore.pem.next")
}

kafka_current() { # the running broker has today's settings, keystore and storage layout
  cmp -s "$KDIR/server.properties.next" "$KDIR/server.properties" \
    && cmp -s "$KDIR/keystore.pem.next" "$KDIR/keystore.pem" \
    && [ "$(cat "$KDIR/data.version" 2>/dev/null)" = "$KAFKA_LAYOUT" ]
}

kafka_up() {
  mkdir -p "$KDIR"
  exec 9>"$KDIR/.lock"; flock 9
  kafka_config
  if port_open 127.0.0.1 "$KAFKA_PORT"; then
    if ! kafka_pid >/dev/null; then
      # Another checkout's broker on the same port: use it as it is.
      say "services: Kafka already answers on 127.0.0.1:$KAFKA_PORT (not started here); using it"
      port_open 127.0.0.1 "$KAFKA_SASL_PORT" \
        || say "services: it has no listener on 127.0.0.1:$KAFKA_SASL_PORT; SASL_SSL tests will fail" >&2
      flock -u 9; return 0
    fi
    if kafka_current; then flock -u 9; return 0; fi
    say "services: restarting Kafka for its new settings (TLS/SASL listener, certificate or storage layout)"
    WIPE=0 kafka_down
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

  mv "$KDIR/server.properties.next" "$KDIR/server.properties"
  mv "$KDIR/keystore.pem.next" "$KDIR/keystore.pem"
  cp "$ROOT/scripts/kafka/log4j2.properties" "$KDIR/log4j2.properties"
  kafka_java_opts

  # Storage formatted by a newer Kafka is unreadable by an older one, and one formatted
  # without the SCRAM user has no way in over SASL_SSL: this is test data, so reformat when
  # the version or the layout changes.
  if [ -f "$KDIR/data/meta.properties" ] && [ "$(cat "$KDIR/data.version" 2>/dev/null)" != "$KAFKA_LAYOUT" ]; then
    say "services: reformatting Kafka's storage (test data) for: $KAFKA_LAYOUT"
    rm -rf "$KDIR/data"
  fi
  if [ ! -f "$KDIR/data/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>"$LOGS/kafka-format.log") \
      || { show_log "$LOGS/kafka-format.log"; die "kafka StorageTool random-uuid failed"; }
    java "${JAVA_OPTS[@]}" -cp "$libs/*" kafka.tools.StorageTool format --standalone --ignore-formatted \
      -t "$cluster_id" -c "$KDIR/server.properties" \
      --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]" >"$LOGS/kafka-format.log" 2>&1 \
      || { show_log "$LOGS/kafka-format.log"; die "formatting Kafka storage failed"; }
    echo "$KAFKA_LAYOUT" >"$KDIR/data.version"
  fi

  local log=$LOGS/kafka.log
  # The previous run's log is kept beside it (kafka.log.1), for a test that failed
  # before the restart; the new one starts empty, so "started" below is this run's.
  if [ -s "$log" ]; then mv -f "$log" "$log.1"; fi
  : >"$log"
  setsid nohup java "${JAVA_OPTS[@]}" -cp "$libs/*" kafka.Kafka "$KDIR/server.properties" >>"$log" 2>&1 </dev/null &
  echo $! >"$KDIR/kafka.pid"
  local started=$SECONDS
  for _ in $(seq 1 240); do
    if ! kafka_pid >/dev/null; then show_log "$log"; die "Kafka exited during start-up"; fi
    if grep -q 'Kafka Server started' "$log" && port_open 127.0.0.1 "$KAFKA_PORT" \
      && port_open 127.0.0.1 "$KAFKA_SASL_PORT"; then
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
tls_brokers() { if [ -n "${KAFKA_BROKERS:-}" ]; then echo "${KAFKA_SASL_SSL_BROKERS:-}"; else echo "127.0.0.1:$KAFKA_SASL_PORT"; fi; }
tls_ca() { if [ -n "${KAFKA_BROKERS:-}" ]; then echo "${KAFKA_SSL_CA_LOCATION:-}"; else echo "$TLS_DIR/ca.pem"; fi; }

cmd_up() {
  mkdir -p "$LOGS"
  need_build_deps
  tls_up # also when both services are given: tests use other-ca.pem
  local tls_url brokers ca
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
  if [ -n "${KAFKA_BROKERS:-}" ]; then
    kafka_answers "$KAFKA_BROKERS" || die "KAFKA_BROKERS=$KAFKA_BROKERS does not answer"
    say "KAFKA_BROKERS=$KAFKA_BROKERS (given)"
  else
    kafka_up
    say "KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
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
}

cmd_down() {
  [ -n "${KAFKA_BROKERS:-}" ] || kafka_down
  [ -n "${DATABASE_URL:-}" ] || pg_down
  if [ "${WIPE:-0}" = 1 ]; then rm -rf "$TLS_DIR"; fi
}

cmd_status() {
  local ok=0 url brokers tls_url tls_brokers ca
  url=${DATABASE_URL:-$(pg_url)}
  brokers=${KAFKA_BROKERS:-127.0.0.1:$KAFKA_PORT}
  tls_url=$(tls_pg_url); tls_brokers=$(tls_brokers); ca=$(tls_ca)
  line() { printf '%-17s %-5s %s\n' "$@"; }
  if pg_answers "$url"; then line postgres: up "DATABASE_URL=$(mask_url "$url")"
  else line postgres: down "($(mask_url "$url"))"; ok=1; fi
  if [ -z "$tls_url" ]; then line "postgres (TLS):" "-" "DATABASE_URL_TLS not set"
  elif pg_answers_tls "$tls_url"; then line "postgres (TLS):" up "DATABASE_URL_TLS=$(mask_url "$tls_url")"
  else line "postgres (TLS):" down "($(mask_url "$tls_url"))"; ok=1; fi
  if kafka_answers "$brokers"; then
    line kafka: up "KAFKA_BROKERS=$brokers$(pid=$(kafka_pid) && echo " (pid $pid)")"
  else
    line kafka: down "($brokers)"; ok=1
  fi
  if [ -z "$tls_brokers" ]; then line "kafka (SASL_SSL):" "-" "KAFKA_SASL_SSL_BROKERS not set"
  elif kafka_answers_tls "$tls_brokers" "$ca"; then
    line "kafka (SASL_SSL):" up "KAFKA_SASL_SSL_BROKERS=$tls_brokers (certificate verified with $ca)"
  else line "kafka (SASL_SSL):" down "($tls_brokers, CA ${ca:-not set})"; ok=1; fi
  return $ok
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
