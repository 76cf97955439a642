#!/usr/bin/env bash
# Fuzzes everything that reads untrusted input (issue 17): the cargo-fuzz (libFuzzer) targets
# in fuzz/ — pdf docx html markdown csv email beir sidecar chunker citations.
#
#   scripts/fuzz.sh [--runs N | --seconds S] [TARGET...]   build, then run each target
#   scripts/fuzz.sh --install                              install the pinned cargo-fuzz only
#
# `make fuzz` is --runs 1000000 (the figures in BENCHMARKS.md); `make test` runs each target
# for --seconds 5. Targets run one after the other (one core each) from a fresh copy of their
# seeds (fuzz/seeds/<target> plus the documents the `seeds` program builds with ingest's
# fixtures and the demo corpus) in fuzz/corpus/<target>, with -rss_limit_mb=2048 -timeout=10.
# Per target it prints executions, exec/s, wall time and coverage (cov/ft of libFuzzer's last
# line); a crash, a panic, a hang (timeout) or running out of memory fails the run (exit 1)
# naming the target and the reproducer libFuzzer wrote under fuzz/artifacts/<target>/
# (rerun it with: $CARGO_TARGET_DIR/<host>/release/<target> fuzz/artifacts/<target>/<file>).
# The last line is one JSON object of the figures.
#
# Built with nightly (`cargo +nightly fuzz build -O`) in a target directory of its own,
# outside the checkout: $HOME/.cache/sanctum-fuzz-target. No sanitizer by default: Sanctum's
# own crates forbid unsafe code, so AddressSanitizer only checks the dependencies' unsafe
# code, at 2-4x fewer executions per second (BENCHMARKS.md). SANCTUM_FUZZ_SANITIZER=address
# builds and runs with it (in $HOME/.cache/sanctum-fuzz-target-address).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
CARGO_FUZZ_VERSION=0.13.2
TARGETS=(pdf docx html markdown csv email beir sidecar chunker citations image_header)

install_cargo_fuzz() {
  if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
  fi
}

mode=runs
value=1000000
selected=()
while [ $# -gt 0 ]; do
  case "$1" in
    --install) install_cargo_fuzz; exit 0 ;;
    --runs) mode=runs; value="${2:?--runs needs a number}"; shift 2 ;;
    --seconds) mode=seconds; value="${2:?--seconds needs a number}"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "fuzz: unknown option $1 (see --help)" >&2; exit 2 ;;
    *)
      [[ " ${TARGETS[*]} " == *" $1 "* ]] || { echo "fuzz: no target $1 (targets: ${TARGETS[*]})" >&2; exit 2; }
      selected+=("$1"); shift ;;
  esac
done
[[ "$value" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: --$mode needs a positive whole number, not $value" >&2; exit 2; }
[ ${#selected[@]} -gt 0 ] || selected=("${TARGETS[@]}")

install_cargo_fuzz
# Sanitizers need a nightly compiler. Without a nightly toolchain the default one is used
# with RUSTC_BOOTSTRAP=1 (as the main workspace already does for qdrant-edge).
toolchain=()
if rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
else
  echo "fuzz: no nightly toolchain; building with $(rustc --version) and RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
fi
sanitizer="${SANCTUM_FUZZ_SANITIZER:-none}"
# never the main workspace's target directory (the Makefile exports that one); one per
# sanitizer, as each needs a build of everything
suffix=""
[ "$sanitizer" = none ] || suffix="-$sanitizer"
export CARGO_TARGET_DIR="${SANCTUM_FUZZ_TARGET_DIR:-$HOME/.cache/sanctum-fuzz-target$suffix}"
host="$(rustc "${toolchain[@]}" -vV | sed -n 's/^host: //p')"
cargo "${toolchain[@]}" fuzz build -O --sanitizer "$sanitizer" --fuzz-dir "$root/fuzz" --target "$host"
bin="$CARGO_TARGET_DIR/$host/release"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin/seeds" "$work/generated" "$root/deploy/demo"

if [ "$mode" = runs ]; then limit="-runs=$value"; else limit="-max_total_time=$value"; fi
# what libFuzzer's last status line and final stats say (empty when absent)
status_field() { grep -E '^#[0-9]+' "$1" | tail -1 | grep -oE "$2: [0-9]+" | grep -oE '[0-9]+$' || true; }
stat_field() { grep -E "^stat::$2:" "$1" | tail -1 | grep -oE '[0-9]+$' || true; }

printf 'fuzz: %-10s %10s %8s %8s %6s %7s %7s %7s  %s\n' target executions exec/s seconds cov ft corpus rss_mb result
json=()
crashed=0
for t in "${selected[@]}"; do
  corpus="fuzz/corpus/$t"
  artifacts="fuzz/artifacts/$t"
  rm -rf "$corpus"
  mkdir -p "$corpus" "$artifacts"
  for dir in "fuzz/seeds/$t" "$work/generated/$t"; do
    if [ -d "$dir" ]; then cp -r "$dir"/. "$corpus"/; fi
  done
  log="$work/$t.log"
  started=$(date +%s.%N)
  set +e
  "$bin/$t" "$corpus" "$limit" -rss_limit_mb=2048 -timeout=10 -close_fd_mask=1 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$log" 2>&1
  rc=$?
  set -e
  seconds=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  runs=$(stat_field "$log" number_of_executed_units)
  speed=$(stat_field "$log" average_exec_per_sec)
  rss=$(stat_field "$log" peak_rss_mb)
  cov=$(status_field "$log" cov)
  ft=$(status_field "$log" ft)
  corp=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'corp: [0-9]+' | grep -oE '[0-9]+$' || true)
  result=ok
  artifact=""
  if [ "$rc" -ne 0 ]; then
    crashed=$((crashed + 1))
    artifact=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/^Test unit written to //' || true)
    reason=$(grep -m1 -oE 'ERROR: libFuzzer: [a-z -]+|ERROR: (AddressSanitizer|LeakSanitizer): [a-zA-Z -]+|a panic escaped[^:]*' "$log" || true)
    result="FAILED (${reason:-exit $rc})"
  fi
  printf 'fuzz: %-10s %10s %8s %8s %6s %7s %7s %7s  %s\n' "$t" "${runs:-?}" "${speed:-?}" "$seconds" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${rss:-?}" "$result"
  if [ "$rc" -ne 0 ]; then
    {
      echo "fuzz: target $t: $result, exit $rc; reproducer: ${artifact:-none written}"
      echo "fuzz: rerun: $bin/$t ${artifact:-<input>}"
      echo "--- last lines of the $t run ---"
      tail -n 60 "$log"
      echo "---"
    } >&2
  fi
  json+=("$(printf '{"target":"%s","executions":%s,"exec_per_s":%s,"seconds":%s,"cov":%s,"ft":%s,"corpus":%s,"peak_rss_mb":%s,"result":"%s","artifact":"%s"}' \
    "$t" "${runs:-null}" "${speed:-null}" "$seconds" "${cov:-null}" "${ft:-null}" "${corp:-null}" "${rss:-null}" \
    "$([ "$rc" -eq 0 ] && echo ok || echo crash)" "$artifact")")
done
joined=$(IFS=,; echo "${json[*]}")
echo "{\"fuzz\":{\"mode\":\"$mode\",\"value\":$value,\"sanitizer\":\"$sanitizer\",\"rss_limit_mb\":2048,\"timeout_s\":10,\"crashed\":$crashed,\"targets\":[$joined]}}"
if [ "$crashed" -ne 0 ]; then
  echo "fuzz: $crashed of ${#selected[@]} targets crashed, hung or ran out of memory (see above)" >&2
  exit 1
fi
