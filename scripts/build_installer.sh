#!/usr/bin/env bash
# Build the installer here on Linux from a clean checkout: the PyInstaller bundle (installer/medscan.spec),
# the bundle's own --self-test (console and GUI, offscreen), then the setup .exe (installer/medscan.iss)
# compiled by Inno Setup's ISCC under wine. Prints the size and time of every step. Takes minutes, so it
# is not part of scripts/test.sh.
#
#   bash scripts/build_installer.sh                   # bundle, self-tests, setup .exe
#   bash scripts/build_installer.sh --install-check   # also install + upgrade + uninstall it under wine
#   bash scripts/build_installer.sh --fast            # quicker, larger setup .exe (lzma2/fast)
#
# On Linux, PyInstaller can only make a Linux bundle, so the .exe built here wraps that bundle as a
# stand-in: it proves the .iss (defines, files, [Code]) and the packaging; the real Windows bundle and
# setup .exe come from .github/workflows/windows-installer.yml with the same spec, .iss and defines.
# Output: dist/medscan/ (bundle) and dist/installer/<name>-<version>-setup.exe.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
# Same pins as the Windows workflow, so both builds freeze the same way.
PYINSTALLER_PINS=("pyinstaller==6.22.3" "pyinstaller-hooks-contrib==2026.9")
INNOSETUP_NPM="innosetup@6.4.1"  # ships ISCC.exe (Inno Setup 6.4.1, 32-bit)
# ISCC and its wine prefix live outside the checkout: a wine prefix links drive Z: to /, and
# setuptools' package discovery (pip install -e .) would follow that link into the whole filesystem.
CACHE=${MEDSCAN_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/medscan-installer}
TOOLS=$CACHE/tools
export WINEPREFIX="$CACHE/wine" WINEDEBUG=-all WINEARCH=win64

die() { echo "build_installer.sh: error: $*" >&2; exit 1; }
say() { printf '\n== %s\n' "$*"; }

install_check=0
compression=""
for arg in "$@"; do
    case "$arg" in
        --install-check) install_check=1 ;;
        --fast) compression="lzma2/fast" ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option '$arg' (see --help)" ;;
    esac
done

SUMMARY=()
# step NAME CMD...: run CMD, record how long it took.
step() {
    local name=$1 start
    shift
    start=$(date +%s)
    "$@"
    SUMMARY+=("$(printf '%-28s %5ss' "$name" "$(($(date +%s) - start))")")
}
size_of() { du -sh "$1" | cut -f1; }

# --- tools -----------------------------------------------------------------------------------------
setup_python() {
    bash scripts/setup.sh
    # shellcheck disable=SC1091
    . .venv/bin/activate
    python -m pip install -q -c constraints.txt "${PYINSTALLER_PINS[@]}"
    echo "pyinstaller $(pyinstaller --version)"
}

setup_wine_and_iscc() {
    local apt_pkgs=()
    command -v wine >/dev/null && dpkg-query -W -f='${Status}' wine32:i386 2>/dev/null | grep -q 'ok installed' \
        || apt_pkgs+=(wine wine32:i386 wine64)
    command -v npm >/dev/null || apt_pkgs+=(npm)
    [ "$install_check" -eq 0 ] || command -v Xvfb >/dev/null || apt_pkgs+=(xvfb)
    if [ "${#apt_pkgs[@]}" -gt 0 ]; then
        [ "$(id -u)" -eq 0 ] || die "missing ${apt_pkgs[*]}: run as root, or install them (wine needs dpkg --add-architecture i386)"
        echo "installing ${apt_pkgs[*]} (Debian)"
        dpkg --add-architecture i386
        # One i386 index may fail to update; the install below says whether that mattered.
        apt-get update -q >/dev/null 2>&1 || echo "build_installer.sh: warning: apt-get update failed partly; trying the install anyway" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm --no-install-recommends "${apt_pkgs[@]}" >/dev/null
    fi
    if [ ! -f "$TOOLS/node_modules/innosetup/bin/ISCC.exe" ]; then
        echo "npm install $INNOSETUP_NPM -> $TOOLS"
        mkdir -p "$TOOLS"
        npm install --silent --no-audit --no-fund --prefix "$TOOLS" "$INNOSETUP_NPM"
    fi
    if [ ! -f "$WINEPREFIX/system.reg" ]; then
        echo "creating the wine prefix $WINEPREFIX"
        wineboot --init >/dev/null 2>&1 || true
        wineserver --wait
        wine reg add 'HKCU\Software\Wine' /v Version /d win10 /f >/dev/null 2>&1  # Setup needs Windows 10+
    fi
    echo "$(wine --version), ISCC from npm $INNOSETUP_NPM"
}

# --- the build -------------------------------------------------------------------------------------
read_project() {  # sets APP_NAME, APP_VERSION, APP_PUBLISHER from pyproject.toml
    local fields
    fields=$(python - <<'EOF'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(project["name"]); print(project["version"]); print(project["authors"][0]["name"])
EOF
)
    APP_NAME=$(sed -n 1p <<<"$fields")
    APP_VERSION=$(sed -n 2p <<<"$fields")
    APP_PUBLISHER=$(sed -n 3p <<<"$fields")
    echo "pyproject.toml: $APP_NAME $APP_VERSION by $APP_PUBLISHER"
    if ! compgen -G "models/*.json" >/dev/null; then
        echo "build_installer.sh: warning: models/ holds no model cards: this bundle ships no models and cannot denoise" >&2
    fi
}

run_pyinstaller() {
    rm -rf dist/medscan build/pyinstaller
    nice -n 10 pyinstaller --noconfirm --clean --log-level WARN \
        --distpath dist --workpath build/pyinstaller installer/medscan.spec
    echo "bundle dist/medscan: $(size_of dist/medscan); largest parts of dist/medscan/_internal:"
    du -s dist/medscan/_internal/* | sort -rn | head -12 | while read -r kib path; do
        printf '  %6.0f MiB  %s\n' "$((kib / 1024))" "${path#dist/medscan/_internal/}"
    done
}

# The bundle must stand alone: run it from an empty folder, with no source tree or venv on any path.
self_test() {
    local exe=$1 where
    where=$(mktemp -d)
    (cd "$where" && env -u PYTHONPATH -u VIRTUAL_ENV -u DISPLAY -u WAYLAND_DISPLAY QT_QPA_PLATFORM=offscreen \
        "$ROOT/dist/medscan/$exe" --self-test)
    rm -rf "$where"
}

compile_setup() {
    local defines=("/DAppName=$APP_NAME" "/DAppVersion=$APP_VERSION" "/DAppPublisher=$APP_PUBLISHER"
                   "/DBundleDir=$(winepath -w dist/medscan)" "/DOutputDir=$(winepath -w dist/installer)")
    [ -z "$compression" ] || defines+=("/DCompression=$compression")
    echo "note: compiling against the Linux bundle as a stand-in for the Windows one (CI builds the real one)"
    rm -rf dist/installer
    (cd installer && nice -n 10 wine "$TOOLS/node_modules/innosetup/bin/ISCC.exe" /Q "${defines[@]}" medscan.iss)
    SETUP_EXE=dist/installer/$APP_NAME-$APP_VERSION-setup.exe
    [ -f "$SETUP_EXE" ] || die "ISCC did not write $SETUP_EXE"
    echo "setup: $SETUP_EXE $(size_of "$SETUP_EXE")"
}

# Install for all users (wine cannot expand {autopf} per user), upgrade over it, uninstall silently
# (databases kept), then uninstall with /DELETEUSERDATA (databases gone).
install_check() {
    local app="$WINEPREFIX/drive_c/Program Files/$APP_NAME" data display=:87 xvfb
    Xvfb "$display" -screen 0 1024x768x24 >/dev/null 2>&1 &
    xvfb=$!
    sleep 1
    export DISPLAY=$display
    wineserver -k 2>/dev/null || true
    data="$(winepath -u "$(wine cmd /c echo %APPDATA% 2>/dev/null | tr -d '\r')")/$APP_NAME"
    mkdir -p "$data" && echo "stand-in database" >"$data/studies.db"

    setup_exe /VERYSILENT /SUPPRESSMSGBOXES /ALLUSERS
    [ -f "$app/_internal/base_library.zip" ] || die "install: $app is incomplete"
    echo "stale" >"$app/_internal/stale-from-old-version.txt"
    setup_exe /VERYSILENT /SUPPRESSMSGBOXES /ALLUSERS
    [ ! -e "$app/_internal/stale-from-old-version.txt" ] || die "upgrade: a file of the old version was left behind"
    uninstaller "$app" /VERYSILENT /SUPPRESSMSGBOXES
    [ ! -e "$app" ] || die "uninstall: $app is still there"
    [ -f "$data/studies.db" ] || die "uninstall: the databases in $data were not kept"
    setup_exe /VERYSILENT /SUPPRESSMSGBOXES /ALLUSERS
    uninstaller "$app" /VERYSILENT /SUPPRESSMSGBOXES /DELETEUSERDATA
    [ ! -e "$data" ] || die "uninstall /DELETEUSERDATA: $data is still there"
    echo "install, upgrade over it, uninstall (databases kept), uninstall /DELETEUSERDATA (deleted): ok"
    wineserver -k 2>/dev/null || true
    kill "$xvfb"
}
setup_exe() { wine "$(winepath -w "$SETUP_EXE")" "$@"; wineserver --wait; }
# The uninstaller copies itself to a temporary folder and finishes there: wait for that too.
uninstaller() { local app=$1; shift; wine "$(winepath -w "$app/unins000.exe")" "$@"; wineserver --wait; }

say "Python build environment (.venv + PyInstaller)"; step "venv + pyinstaller" setup_python
say "wine + Inno Setup compiler"; step "wine + ISCC" setup_wine_and_iscc
read_project
say "PyInstaller (installer/medscan.spec)"; step "pyinstaller" run_pyinstaller
say "bundle: medscan --self-test"; step "self-test medscan" self_test medscan
say "bundle: medscan-gui --self-test (offscreen)"; step "self-test medscan-gui" self_test medscan-gui
say "ISCC (installer/medscan.iss) under wine"; step "iscc" compile_setup
if [ "$install_check" -eq 1 ]; then
    say "install / upgrade / uninstall under wine"; step "install check" install_check
fi

say "Summary"
printf '  %s\n' "${SUMMARY[@]}"
echo "  bundle      dist/medscan                 $(size_of dist/medscan)"
echo "  setup .exe  $SETUP_EXE  $(size_of "$SETUP_EXE")"
