#!/usr/bin/env bash
# The main job: start the services, then run the quickstart example.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/services.sh up
cargo run --quiet -p outbox-examples --bin quickstart
