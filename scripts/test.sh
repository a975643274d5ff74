#!/usr/bin/env bash
# Set everything up (with the dev tools), then lint and run the test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k nifti` or `bash scripts/test.sh -m slow`.
# Tests marked slow are left out by default (addopts in pyproject.toml).
# Both ruff and pytest always run; the exit status is non-zero when either fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh --dev
# shellcheck disable=SC1091
. .venv/bin/activate

# Qt (when the GUI tests come) must never look for a screen.
export QT_QPA_PLATFORM=offscreen

echo "== ruff check medscan ui tests scripts"
lint=0
ruff check medscan ui tests scripts || lint=$?

echo "== pytest"
tests=0
python -m pytest -q "$@" || tests=$?

if [ "$tests" -eq 5 ]; then
    echo "test.sh: error: pytest collected no tests" >&2
    tests=1
fi
if [ "$lint" -ne 0 ]; then
    echo "test.sh: error: ruff found problems (see above; 'ruff check --fix' mends some)" >&2
fi
if [ "$tests" -ne 0 ]; then
    exit "$tests"
fi
exit "$lint"
