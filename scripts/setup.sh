#!/usr/bin/env bash
# Bootstrap a medscan checkout: system packages, .venv, and an editable install of medscan.
#
#   bash scripts/setup.sh          # medscan with every extra: the window (gui) and Dask batch jobs (cluster)
#   bash scripts/setup.sh --dev    # plus pytest, ruff, import-linter and dcm2niix for the test suite
#
# Idempotent and quick on a second run: pip is skipped while .venv/.medscan-setup matches a hash of
# pyproject.toml and constraints.txt. Debian packages are installed with apt-get when running as root.
set -euo pipefail

# Debian packages needed beyond Python itself, one per line; only missing ones are installed.
# Qt (PyQt6 wheels) needs these system libraries even offscreen; xvfb only for a real X display.
APT_PACKAGES=(
    libegl1
    libgl1
    libxkbcommon0
    libfontconfig1
    libdbus-1-3
    libglib2.0-0
    fonts-dejavu-core
)
# Only for the test suite (--dev): a real PostgreSQL server that the database tests start on loopback, a real
# Orthanc PACS and dcmtk's storescu/findscu/echoscu as independent DICOM peers for the network tests.
DEV_APT_PACKAGES=(
    postgresql
    orthanc
    dcmtk
)

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.venv
STAMP=$VENV/.medscan-setup

die() { echo "setup.sh: error: $*" >&2; exit 1; }
say() { echo "setup: $*"; }

dev=0
for arg in "$@"; do
    case "$arg" in
        --dev) dev=1 ;;
        -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option '$arg' (use --dev or --help)" ;;
    esac
done

LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

# run_quiet WHAT CMD...: run CMD with its output kept aside; on failure show the tail and stop.
run_quiet() {
    local what=$1
    shift
    if ! "$@" >"$LOG" 2>&1; then
        echo "setup.sh: error: $what failed: $*" >&2
        tail -n 40 "$LOG" | sed 's/^/    /' >&2
        exit 1
    fi
}

is_root() { [ "$(id -u)" -eq 0 ]; }

apt_updated=0
# apt_install PKG...: install Debian packages (root only); a failed `apt-get update` is tolerated.
apt_install() {
    is_root || die "these Debian packages are missing: $* (run as root, or: sudo apt-get install -y $*)"
    command -v apt-get >/dev/null || die "no apt-get here; install these packages by hand: $*"
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update"
        apt-get update >"$LOG" 2>&1 || echo "setup.sh: warning: apt-get update failed; trying the install anyway" >&2
        apt_updated=1
    fi
    say "apt-get install $*"
    run_quiet "apt-get install" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@"
}

# --- Debian packages ------------------------------------------------------------------------------
missing=()
wanted=("${APT_PACKAGES[@]+"${APT_PACKAGES[@]}"}")
if [ "$dev" -eq 1 ]; then
    wanted+=("${DEV_APT_PACKAGES[@]}")
fi
for pkg in "${wanted[@]+"${wanted[@]}"}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi

# --- Python and .venv -----------------------------------------------------------------------------
# A .venv whose interpreter no longer runs (moved checkout, removed Python) is rebuilt.
if [ -e "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "$VENV is broken; recreating it"
    rm -rf "$VENV"
fi

if [ ! -e "$VENV/bin/python" ]; then
    python=${PYTHON:-}
    if [ -z "$python" ]; then
        for candidate in python3.11 python3; do
            if command -v "$candidate" >/dev/null \
                && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
                python=$candidate
                break
            fi
        done
    fi
    [ -n "$python" ] || die "medscan needs Python 3.11 (found: $(python3 --version 2>&1 || echo 'no python3')); set PYTHON=/path/to/python3.11"
    # Debian ships venv's ensurepip separately (python3-venv).
    if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        is_root || die "'$python -m venv' is unavailable; as root run: apt-get install -y python3-venv"
        apt_install python3-venv
        "$python" -c 'import ensurepip, venv' >/dev/null 2>&1 \
            || die "'$python -m venv' still does not work after installing python3-venv"
    fi
    say "creating $VENV with $("$python" --version 2>&1)"
    run_quiet "creating $VENV" "$python" -m venv "$VENV"
fi

# --- medscan and its Python dependencies ----------------------------------------------------------
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
have=$(cat "$STAMP" 2>/dev/null || true)
# A dev install also satisfies a plain one.
if [ -x "$VENV/bin/medscan" ] && { [ "$have" = "$want dev" ] || { [ "$dev" -eq 0 ] && [ "$have" = "$want base" ]; }; }; then
    exit 0
fi

target=".[gui,cluster]"  # every extra: the window and Dask batch jobs
mode=base
if [ "$dev" -eq 1 ]; then
    target=".[dev]"
    mode=dev
fi
say "installing medscan ($mode) into $VENV; the first run takes a few minutes"
rm -f "$STAMP"
run_quiet "pip install" "$VENV/bin/python" -m pip install -q -c constraints.txt -e "$target"
echo "$want $mode" >"$STAMP"
say "ready: activate with '. $VENV/bin/activate'"
