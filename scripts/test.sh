#!/usr/bin/env bash
# Set everything up (with the dev tools), then lint, check the layers and run the full test tier (what CI runs).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k nifti` or `bash scripts/test.sh -m slow`.
# The full tier is every test but the slow ones (model training; `-m slow`). A developer's quick check after a
# change is the fast tier: `python -m pytest` (no model, gui, postgres or slow tests; under 5 minutes on 2 cores).
# ruff, lint-imports and pytest always all run; the exit status is non-zero when any fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh --dev
# shellcheck disable=SC1091
. .venv/bin/activate

# Qt must never look for a screen.
export QT_QPA_PLATFORM=offscreen

echo "== ruff check medscan ui tests scripts"
lint=0
ruff check medscan ui tests scripts || lint=$?

echo "== lint-imports (the layers in pyproject.toml [tool.importlinter])"
layers=0
lint-imports --no-cache || layers=$?

# A test that stalls fails alone after pytest-timeout's limit (pyproject.toml), with every thread's stack printed.
echo "== pytest --full"
tests=0
python -m pytest -q --full "$@" || tests=$?

if [ "$tests" -eq 5 ]; then
    echo "test.sh: error: pytest collected no tests" >&2
    tests=1
fi
if [ "$lint" -ne 0 ]; then
    echo "test.sh: error: ruff found problems (see above; 'ruff check --fix' mends some)" >&2
fi
if [ "$layers" -ne 0 ]; then
    echo "test.sh: error: an import breaks the layers (see above; docs/architecture.md shows them)" >&2
fi
if [ "$tests" -ne 0 ]; then
    exit "$tests"
fi
if [ "$lint" -ne 0 ]; then
    exit "$lint"
fi
exit "$layers"
