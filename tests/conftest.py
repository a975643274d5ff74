"""Fixtures and rules shared by the suites.

- Tiers: ``python -m pytest`` runs the fast tier (addopts in pyproject.toml leave out the markers ``model``, ``gui``,
  ``postgres`` and ``slow``); ``bash scripts/test.sh`` (CI) runs the full tier, everything but ``slow``. Tests that
  drive the window (``qtbot``) are marked ``gui`` and those on the PostgreSQL server ``postgres`` here, by what they
  use; ``model`` is set per module.
- Data: tests read the real scans in ``../shared/data`` (``MEDSCAN_DATA``). Without it they skip on a developer's
  machine, but under CI (``CI=true``) a missing folder, and any skip that names it, fails the run.
- The sample CT is decoded once per session (``sample_ct``); a throwaway PostgreSQL server on loopback; scripts/
  loaded as modules.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import create_engine, text

from medscan.resources import shared_data_dir

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
SAMPLE_CT = ROOT / "samples" / "ct_abdomen_siemens"
IN_CI = os.environ.get("CI", "").lower() == "true"


# ---------------------------------------------------------------------------------------------
# Tiers and data
# ---------------------------------------------------------------------------------------------
def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI the real scans must be there: a run that silently skipped most of the suite would pass."""
    data = shared_data_dir()
    if IN_CI and not data.is_dir():
        pytest.exit(f"conftest: {data}: the shared data folder is missing (CI=true); set MEDSCAN_DATA or lay "
                    "../shared/data beside the checkout", returncode=1)


FULL_TIER_ONLY = ("model", "gui", "postgres")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true",
                     help="the full tier (CI): also the model, gui and postgres tests; slow ones still need -m slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark what a test uses (the window, through ``qtbot`` or in a test_gui* module, is ``gui``; the PostgreSQL
    server ``postgres``), then keep the tier: slow tests never run unless ``-m`` asks; a plain ``pytest`` (no paths)
    also leaves out the full tier's."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if "qtbot" in names or item.path.name.startswith("test_gui"):  # the window, in-process or as a process
            item.add_marker(pytest.mark.gui)
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "postgres_server" in names or params.get("target") == "postgresql":
            item.add_marker(pytest.mark.postgres)
    if config.option.markexpr:  # -m decides alone
        return
    left_out = {"slow"}
    if not config.getoption("--full") and config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        left_out |= set(FULL_TIER_ONLY)
    kept, deselected = [], []
    for item in items:
        (deselected if any(item.get_closest_marker(name) for name in left_out) else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Under CI a skip because a file of the shared data is missing is a failure, not a skip."""
    report = yield
    if IN_CI and report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        data = str(shared_data_dir())
        if data in reason or ("shared" in reason and ("not present" in reason or "not available" in reason)):
            report.outcome = "failed"
            report.longrepr = f"CI=true and the shared data is incomplete: {reason}"
    return report


@pytest.fixture
def open_main_window(qtbot):
    """A factory for the application's main window: ``open_main_window(settings, size=(w, h), dark=True, **kw)``
    builds ``MainWindow(settings=settings, **kw)`` (the dark theme first unless ``dark=False``), shows it at
    ``size`` offscreen, waits until it is exposed and returns it; every window it made is closed after the test."""
    from PyQt6.QtWidgets import QApplication

    from ui.qt_main_window import MainWindow
    from ui.qt_theme import apply_dark_theme

    made = []

    def make(settings, *, size: tuple[int, int] = (1200, 800), dark: bool = True, **kwargs):
        if dark:
            apply_dark_theme(QApplication.instance())
        win = MainWindow(settings=settings, **kwargs)
        qtbot.addWidget(win)
        win.resize(*size)
        win.show()
        qtbot.waitExposed(win)
        made.append(win)
        return win

    yield make
    for win in made:
        win.close()


@pytest.fixture(scope="session")
def sample_ct():
    """The bundled sample CT (20 x 512 x 512 HU, JPEG 2000), decoded once for the whole session.

    Shared by every test that asks for it, so its voxels are read-only: derive a new Scan (``scan.derive``,
    ``dataclasses.replace`` with copied voxels) to change anything.
    """
    from medscan.io import load

    scan = load(SAMPLE_CT)
    scan.voxels.flags.writeable = False
    return scan


@pytest.fixture(scope="session")
def load_script():
    """scripts/ is not a package: ``load_script("evaluate_denoise")`` loads a script as a module (its main() does
    not run on import)."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
        spec.loader.exec_module(module)
        return module

    return load


# ---------------------------------------------------------------------------------------------
# A throwaway PostgreSQL cluster on loopback
# ---------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """Start Debian's PostgreSQL in a temp dir (as user postgres when we are root); yield its URL."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    bindir = Path(binaries[-1]).parent
    as_postgres: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="medscan-pg-"))
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    data = root / "data"
    run = lambda *cmd: subprocess.run([*as_postgres, *cmd], check=True, capture_output=True, timeout=120)  # noqa: E731
    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    """(database target, blob folder) for a fresh, empty database on each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "studies.db"), None
    server = request.getfixturevalue("postgres_server")
    name = f"t{os.getpid()}_{random.randrange(1 << 30)}"
    engine = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return f"{server}/{name}", str(tmp_path / "blobs")


# ---------------------------------------------------------------------------------------------
# A throwaway Orthanc PACS on loopback
# ---------------------------------------------------------------------------------------------
class OrthancServer:
    """A running Orthanc: its DICOM ``node`` (AE@host:port), HTTP ``url``, and the port its modality entry for
    our AE (MEDSCAN) points C-MOVEs at."""

    def __init__(self, process: subprocess.Popen, dicom_port: int, http_port: int, move_port: int, root: Path):
        self.process, self.dicom_port, self.http_port, self.move_port, self.root = (
            process, dicom_port, http_port, move_port, root)
        self.node = f"ORTHANC@127.0.0.1:{dicom_port}"
        self.url = f"http://127.0.0.1:{http_port}"

    def rest(self, path: str, method: str = "GET", body: bytes | None = None):
        import json
        import urllib.request

        request = urllib.request.Request(self.url + path, data=body, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            data = response.read()
        if response.headers.get_content_type() == "application/json":
            return json.loads(data)
        return data.decode()

    def clear(self) -> None:
        for patient in self.rest("/patients"):
            self.rest(f"/patients/{patient}", method="DELETE")


def _orthanc_unavailable(why: str):
    """In CI a missing Orthanc is a failure, never a silent skip."""
    message = f"Orthanc cannot start: {why} (scripts/setup.sh --dev installs the Debian package 'orthanc')"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def start_orthanc(*, allow_get: bool = True) -> OrthancServer:
    """Start Orthanc with a generated configuration in a temp dir; ``allow_get=False`` makes a C-MOVE-only PACS."""
    import json
    import time
    import urllib.request

    binary = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    if binary is None:
        _orthanc_unavailable("the Orthanc binary is not installed")
    root = Path(tempfile.mkdtemp(prefix="medscan-orthanc-"))
    dicom_port, http_port, move_port = _free_port(), _free_port(), _free_port()
    config = {
        "Name": "medscan-test", "StorageDirectory": str(root / "storage"), "IndexDirectory": str(root / "index"),
        "DicomAet": "ORTHANC", "DicomPort": dicom_port, "HttpPort": http_port, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "HttpServerEnabled": True, "Plugins": [], "StorageCompression": False,
        "DicomCheckCalledAet": False, "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True, "DicomAlwaysAllowMove": True, "DicomAlwaysAllowGet": allow_get,
        "UnknownSopClassAccepted": True, "DicomScpTimeout": 30, "SaveJobs": False,
        "DicomModalities": {"medscan": {"AET": "MEDSCAN", "Host": "127.0.0.1", "Port": move_port,
                                        "AllowGet": allow_get}},
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = open(root / "orthanc.log", "wb")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen([binary, str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/system", timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                tail = (root / "orthanc.log").read_text(errors="replace")[-400:]
                shutil.rmtree(root, ignore_errors=True)
                _orthanc_unavailable(f"it did not answer on port {http_port}: {tail}")
            time.sleep(0.2)
    return OrthancServer(process, dicom_port, http_port, move_port, root)


def stop_orthanc(server: OrthancServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def orthanc_session():
    server = start_orthanc()
    yield server
    stop_orthanc(server)


@pytest.fixture
def orthanc(orthanc_session):
    """The session's Orthanc, emptied before each test."""
    orthanc_session.clear()
    return orthanc_session
