#!/usr/bin/env bash
# `make test`: lint, then every module's tests against throwaway PostgreSQL and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
trap deps_stop EXIT
deps_start

make lint
status=0
for m in $(sed -n 's|^[[:space:]]*\./||p' go.work); do
  [ -n "$(cd "$m" && go list ./... 2>/dev/null)" ] || continue
  echo "== go test $m"
  (cd "$m" && go test -race -count=1 -timeout 25m ./...) || status=1
done
echo "== bench (quick)"
BENCH_QUICK=1 bash scripts/bench.sh || status=1
exit $status
