#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a bounded time each, from the
# committed corpus (fuzz/corpus/<target>/), and fails naming the artifact of a
# crash. Installs cargo-fuzz when it is missing; needs the nightly toolchain.
#
#   bash scripts/fuzz.sh [--seconds N] [--sanitizer address|none] [TARGET...]
#   bash scripts/fuzz.sh --seeds          # rewrite the seed-* files of the corpus
#   bash scripts/fuzz.sh --list
#
# Default: every target, 15 s each. Builds keep debug assertions (overflow
# checks), so an arithmetic overflow is a crash too. New inputs found go to
# fuzz/target/corpus/<target>/ (not committed); crashes to fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=15
sanitizer=none
targets=()
while (($#)); do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --sanitizer) sanitizer="$2"; shift 2 ;;
    --seeds) seeds=1; shift ;;
    --list) list=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done

# relay_row last: its feature rebuilds the crate once, not twice.
all_targets=(record_decode record_roundtrip outboxed_payload avro_datum derive_attrs controller_attrs relay_row)
if [[ -n "${list:-}" ]]; then
  printf '%s\n' "${all_targets[@]}"
  exit 0
fi
((${#targets[@]})) || targets=("${all_targets[@]}")

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz"
  start=$SECONDS
  cargo install cargo-fuzz --locked
  echo "fuzz.sh: cargo-fuzz installed in $((SECONDS - start)) s"
fi

if [[ -n "${seeds:-}" ]]; then
  cargo +nightly run --quiet --manifest-path fuzz/Cargo.toml --example seeds
  exit 0
fi

# Targets that need more than the core crate: relay_row reads rows through
# outbox-diesel, which builds librdkafka.
features_of() {
  case "$1" in
    relay_row) echo "--features=relay" ;;
    *) echo "" ;;
  esac
}

failed=()
for target in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $target "* ]] || { echo "fuzz.sh: no target $target" >&2; exit 2; }
  work="fuzz/target/corpus/$target"
  mkdir -p "$work" "fuzz/artifacts/$target"
  log="fuzz/target/fuzz-$target.log"
  echo "== $target: building"
  # shellcheck disable=SC2046
  cargo +nightly fuzz build --debug-assertions --sanitizer "$sanitizer" $(features_of "$target") "$target"
  echo "== $target: fuzzing for $seconds s"
  status=0
  corpora=("$work")
  [[ -d "fuzz/corpus/$target" ]] && corpora+=("fuzz/corpus/$target")
  # New inputs go to the first directory; the committed corpus is only read.
  # shellcheck disable=SC2046
  cargo +nightly fuzz run --debug-assertions --sanitizer "$sanitizer" $(features_of "$target") \
    "$target" "${corpora[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  echo "$target: ${runs:-?} executions, ${rate:-?} exec/s"
  if ((status != 0)); then
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    grep -E "panicked at|ERROR: libFuzzer|SUMMARY" "$log" | head -5 >&2 || true
    echo "$target: CRASH (exit $status), artifact: ${artifact:-none, see $log}" >&2
    echo "  reproduce: cargo +nightly fuzz run --debug-assertions --sanitizer $sanitizer $(features_of "$target") $target ${artifact:-}" >&2
    failed+=("$target")
  fi
done

if ((${#failed[@]})); then
  echo "fuzz.sh: crashes in ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: no crash in ${targets[*]}"
