#!/usr/bin/env bash
# Runs every Go fuzz target of the workspace, one at a time, for FUZZTIME each (default 30s),
# and fails when any of them finds a crash. Usage: scripts/fuzz.sh [package-dir-filter]
# New crashers are written by `go test` under the package's testdata/fuzz/<Target>/; commit
# them with the fix so that plain `go test` replays them.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-30s}"
filter="${1:-}"
status=0
count=0
failed=()

for m in $(sed -n 's|^[[:space:]]*\./||p' go.work); do
  # Each fuzz target is a top-level "func FuzzX(f *testing.F)" in a _test.go file.
  while IFS= read -r hit; do
    file="${hit%%:*}"
    name="$(sed -E 's/^[^:]*:[0-9]+:func (Fuzz[A-Za-z0-9_]*)\(.*/\1/' <<<"$hit")"
    dir="$(dirname "$file")"
    if [ -n "$filter" ] && [[ "$dir" != *"$filter"* ]]; then
      continue
    fi
    count=$((count + 1))
    echo "== fuzz $name in ./$dir for $fuzztime"
    if ! (cd "$m" && go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "./${dir#"$m"/}"); then
      status=1
      failed+=("$dir $name")
    fi
  done < <(grep -rnE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' "$m" || true)
done

if [ "$count" -eq 0 ]; then
  echo "fuzz.sh: no fuzz targets found" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "fuzz.sh: ${#failed[@]} of $count targets failed:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "fuzz.sh: $count targets ran for $fuzztime each without a crash"
