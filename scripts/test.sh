#!/usr/bin/env bash
# Set everything up (with the dev tools), then lint and run the test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k nifti` or `bash scripts/test.sh -m slow`.
# Tests marked slow are left out by default (addopts in pyproject.toml).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh --dev
# shellcheck disable=SC1091
. .venv/bin/activate

# Qt (when the GUI tests come) must never look for a screen.
export QT_QPA_PLATFORM=offscreen

echo "== ruff check medscan tests scripts"
ruff check medscan tests scripts

echo "== pytest"
status=0
python -m pytest -q "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "test.sh: error: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
