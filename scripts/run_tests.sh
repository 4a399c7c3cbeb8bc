#!/usr/bin/env bash
# Run the whole suite. pytest exits 5 when it collected nothing: that is a failure here, not green.
set -u
python="${1:-.venv/bin/python}"
shift || true
"$python" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run_tests: pytest collected no tests; treating as failure" >&2
  exit 1
fi
exit "$rc"
