#!/usr/bin/env bash
# All the tests, against the real PostgreSQL and Kafka this script starts.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/services.sh up
cargo test --workspace "$@"
