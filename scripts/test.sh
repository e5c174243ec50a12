#!/usr/bin/env bash
# `make test`: lint, then every module's tests against throwaway PostgreSQL and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
trap deps_stop EXIT

# Tools the tests call, as command:package (the docs' runnable blocks use curl, jq and openssl;
# e2e/upload reads sockets with ss; the deploy tests install nginx, systemd and strace
# themselves).
missing=()
for pair in curl:curl jq:jq openssl:openssl ss:iproute2; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test: installing ${missing[*]}" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
deps_start

make lint
status=0
for m in $(sed -n 's|^[[:space:]]*\./||p' go.work); do
  [ -n "$(cd "$m" && go list ./... 2>/dev/null)" ] || continue
  echo "== go test $m"
  (cd "$m" && go test -race -count=1 -timeout 25m ./...) || status=1
done
echo "== fuzz"
bash scripts/fuzz.sh || status=1
echo "== bench (quick)"
BENCH_QUICK=1 bash scripts/bench.sh || status=1
exit $status
