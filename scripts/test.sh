#!/usr/bin/env bash
# All the tests, against the real PostgreSQL and Kafka this script starts.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/services.sh up
# The cluster test's private three-node Kafka (tests/src/broker/private.rs) starts late in
# the run: reserve its ports now, before the tests' own connections take ephemeral ports
# one of its nodes would then fail to bind (seen: 127.0.0.1:58294 "Address already in use").
KAFKA_PORT=58092 KAFKA_CONTROLLER_PORT=58093 KAFKA_SASL_PORT=58094 \
  bash scripts/services.sh reserve kafka
cargo test --workspace "$@"
