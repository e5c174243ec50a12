#!/usr/bin/env bash
# `make bench`: the benchmark suite of issue 7 against throwaway PostgreSQL and Redis, with the
# control plane and data nodes run as processes on 127.0.0.1 (bench/, TestSuite).
#
# Prints one `bench: <name> value=… target=… unit=… pass=…` line per result and exits non-zero
# when a target is missed, a line is missing or the suite fails. A full run appends its table
# to docs/BENCHMARKS.md.
#
# BENCH_QUICK=1: small sizes (under 2 minutes, run by `make test`); misses are printed but do
#   not fail, since quick sizes are not the measured ones; a crash or a missing line does fail.
#   Nothing is written to docs/.
# BENCH_PROFILE_DIR=dir: build the binaries with pprof endpoints (go build -overlay, the source
#   tree is untouched) and save CPU profiles of the single-node benchmarks there. Such a run is
#   not recorded in docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
load=$(cut -d' ' -f1-3 /proc/loadavg) # before this script's own builds and servers add to it
source scripts/deps.sh

mode=full
[ "${BENCH_QUICK:-}" = 1 ] && mode=quick

# Our own servers, even inside `make test` (which exported its own): db_round_trips_per_upload
# needs pg_stat_statements preloaded.
unset TEST_DATABASE_URL TEST_REDIS_URL DATABASE_URL REDIS_URL PG_PORT REDIS_PORT
export PG_EXTRA_OPTS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=top"
trap deps_stop EXIT
deps_start

out="$DEPS_DIR/bench.out"
echo "== bench ($mode): building the suite" >&2
(cd bench && go test -c -o "$DEPS_DIR/bench.test" .)

# The code measured, read before the suite runs: at the end, docs/BENCHMARKS.md itself is being
# written.
started=$(date -u '+%Y-%m-%d %H:%M UTC')
code="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$( [ -n "$(git status --porcelain -- . ':!docs/BENCHMARKS.md' 2>/dev/null)" ] && echo ' with uncommitted changes'), $(go version | cut -d' ' -f3)"
set +e
(cd bench && BENCH_MODE=$mode "$DEPS_DIR/bench.test" -test.run '^TestSuite$' -test.v -test.timeout 30m) 2>&1 | tee "$out"
suite=${PIPESTATUS[0]}
set -e

names=(upload_direct_vs_disk upload_frontdoor_vs_direct download_direct_vs_checked_servefile
  download_frontdoor_vs_direct download_frontdoor_cpu_per_gib upload_memory_per_transfer
  small_uploads_per_s small_uploads_p99 db_round_trips_per_upload graphql_collections_p99_at_600
  graphql_collections_errors_at_600 gossip_capacity_propagation_p99 node_death_detection
  datanode_start_with_100k_versions)
status=0
for n in "${names[@]}"; do
  if [ "$(grep -c "^bench: $n value=" "$out")" != 1 ]; then
    echo "bench: no result line for $n" >&2
    status=1
  fi
done
missed=$(grep -c '^bench: .* pass=false$' "$out" || true)
if [ "$mode" = full ] && [ "$missed" != 0 ]; then status=1; fi
if [ "$suite" != 0 ]; then
  # In quick mode the suite itself fails only on crashes, errors and missing results.
  echo "bench: the suite failed (exit $suite)" >&2
  status=1
fi

if [ "$mode" = full ] && [ -z "${BENCH_PROFILE_DIR:-}" ]; then
  doc="$ROOT/docs/BENCHMARKS.md"
  mkdir -p "$(dirname "$doc")"
  [ -f "$doc" ] || printf '# Benchmarks\n\nRuns of `make bench`, newest last.\n' >"$doc"
  disk_dev=$(df --output=source,fstype "${TMPDIR:-/tmp}" | tail -1 | awk '{print $1" ("$2")"}')
  disk_name=$(basename "$(df --output=source "${TMPDIR:-/tmp}" | tail -1)")
  rotational=$(cat "/sys/block/$disk_name/queue/rotational" 2>/dev/null || echo '?')
  {
    echo
    echo "### Run of $started"
    echo
    echo "- Machine: $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)), $(free -g | awk '/^Mem:/{print $2}') GiB memory, disk ${disk_dev}, rotational=${rotational}; $(uname -sr)"
    echo "- Load at start: $load (the machine is shared)"
    echo "- Code: $code"
    echo "- Command: \`make bench\`"
    echo "- Outcome: $([ "$status" = 0 ] && echo 'every target met' || echo "$missed target(s) missed$([ "$suite" != 0 ] && echo ', suite failed')")"
    echo
    echo "| name | value | target | unit | pass |"
    echo "| --- | --- | --- | --- | --- |"
    sed -n 's/^bench: \([^ ]*\) value=\([^ ]*\) target=\([^ ]*\) unit=\([^ ]*\) pass=\([a-z]*\)$/| `\1` | \2 | \3 | \4 | \5 |/p' "$out"
    echo
    echo "<details><summary>Details (suite log lines)</summary>"
    echo
    echo '```'
    # The suite's own log lines and their indented continuations (the statement list).
    awk '/^[[:space:]]+[a-z_]+_test\.go:[0-9]+: / {
           if ($0 ~ /misses its target$/) { cont = 0; next }
           sub(/^[[:space:]]+/, ""); print; cont = 1; next }
         cont && /^        +[0-9]+  / { sub(/^[[:space:]]+/, "  "); print; next }
         { cont = 0 }' "$out"
    echo '```'
    echo
    echo "</details>"
  } >>"$doc"
  echo "bench: results appended to docs/BENCHMARKS.md" >&2
fi
exit $status
