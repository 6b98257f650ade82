#!/usr/bin/env bash
# The whole test suite: type check, then every test (unit and root/namespace
# integration tests) with bun's runner. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "vipd tests create network namespaces and must run as root" >&2
  exit 1
fi
bash scripts/setup-system.sh
node_modules/.bin/tsc -p .
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
node_modules/.bin/bun test --timeout 60000 "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
pass=$(grep -Eo '^ *[0-9]+ pass$' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
fail=$(grep -Eo '^ *[0-9]+ fail$' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
echo "bun test: ${pass} passed, ${fail} failed"
exit "$rc"
