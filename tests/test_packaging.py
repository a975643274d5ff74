"""Packaging and licence: `pip install medscan` is the engine and CLI without PyQt6 or Dask, the extras add them,
the licence is GPL-3.0-or-later everywhere it is stated, and the third-party notices name every dependency.

The engine-without-extras tests run the real commands in a Python whose PyQt6, Dask, distributed and TensorBoard
cannot be imported (as after a plain `pip install medscan`), on the bundled sample study.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CT = ROOT / "samples" / "ct_abdomen_siemens"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

# Run a module's main in a Python where the extras' packages do not import (as if never installed).
WITHOUT_EXTRAS = """
import importlib.abc, runpy, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"PyQt6", "dask", "distributed", "tensorboard"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Absent())
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_module(sys.argv[0], run_name="__main__")
"""


def _without_extras(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS, module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _names(requirements: list[str]) -> set[str]:
    return {r.split(">")[0].split("=")[0].split("<")[0].split("[")[0].split(";")[0].strip().lower()
            for r in requirements}


def test_plain_install_has_no_window_or_dask_and_the_extras_add_them() -> None:
    core = _names(PROJECT["dependencies"])
    extras = PROJECT["optional-dependencies"]
    assert not core & {"pyqt6", "dask", "distributed", "pytest-qt"}
    assert _names(extras["gui"]) == {"pyqt6"}
    assert _names(extras["cluster"]) == {"dask", "distributed"}
    assert "medscan[gui,cluster]" in extras["dev"] and "pytest-qt" in _names(extras["dev"])
    # TensorBoard event files and the docs' loss curves are for training; the engine runs without TensorBoard
    # (below). matplotlib is named for make_docs.py, though captum (a core dependency) pulls it in anyway.
    assert _names(extras["train"]) == {"tensorboard", "matplotlib"} and "medscan[train]" in extras["dev"]
    assert "tensorboard" not in core
    assert "scikit-image" in core  # the fidelity guard's body mask needs it at run time, not only in tests


@pytest.mark.model
def test_engine_runs_info_and_denoise_without_pyqt6_or_dask(tmp_path) -> None:
    info = _without_extras("medscan", "info", str(SAMPLE_CT))
    assert info.returncode == 0, info.stderr
    assert "CT" in info.stdout and "512x512x20" in info.stdout
    out = tmp_path / "denoised.nii.gz"
    clean = _without_extras("medscan", "clean", "denoise", str(SAMPLE_CT), "-o", str(out), "--device", "cpu")
    assert clean.returncode == 0, clean.stderr
    assert out.is_file() and f"wrote {out}" in clean.stdout


def test_without_the_extras_each_missing_part_says_how_to_get_it(tmp_path, monkeypatch) -> None:
    gui = _without_extras("ui.app")
    assert gui.returncode == 1
    assert gui.stderr.strip() == ("medscan-gui: PyQt6 is not installed; the window needs it: "
                                  "pip install 'medscan[gui]'")
    from medscan.db.store import Database

    with Database.create(tmp_path / "studies.db", "db key", scrypt_n=2**12) as database:
        database.add_user("tech", "technician", "tech pass")
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"operation: highlight\ninputs: [{SAMPLE_CT}]\noutput: {{folder: {tmp_path / 'out'}}}\n")
    for name, value in (("MEDSCAN_DB_KEY", "db key"), ("MEDSCAN_USER", "tech"), ("MEDSCAN_USER_KEY", "tech pass")):
        monkeypatch.setenv(name, value)
    batch = _without_extras("medscan", "batch", "run", str(spec), "--db", str(tmp_path / "studies.db"),
                            "--scheduler", "tcp://127.0.0.1:1")
    assert batch.returncode == 1
    assert batch.stderr.strip() == "medscan: --scheduler: Dask is not installed: pip install 'medscan[cluster]'"


def test_self_test_checks_the_window_only_where_pyqt6_is_installed(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDSCAN_MODELS", str(tmp_path / "absent"))  # no models: keeps the check quick
    result = _without_extras("ui.app", "--self-test")
    lines = {line.split()[1]: line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines["gui"] == "skip" and "pip install 'medscan[gui]'" in result.stdout
    assert lines["imports"] == "ok" and "window's libraries not checked" in result.stdout


def test_licence_is_gpl3_or_later_everywhere_it_is_stated() -> None:
    assert PROJECT["license"] == "GPL-3.0-or-later"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "GNU GENERAL PUBLIC LICENSE" in text and "Version 3, 29 June 2007" in text
    assert set(PROJECT["license-files"]) == {"LICENSE", "THIRD_PARTY_NOTICES.md"}
    iss = (ROOT / "installer" / "medscan.iss").read_text(encoding="utf-8")
    for line in ("LicenseFile=..\\LICENSE", "InfoBeforeFile=..\\THIRD_PARTY_NOTICES.md"):
        assert line in iss
        assert (ROOT / "installer" / line.split("=", 1)[1].replace("\\", "/")).is_file()
    spec = (ROOT / "installer" / "medscan.spec").read_text(encoding="utf-8")
    assert 'files("LICENSE", ".")' in spec and 'files("THIRD_PARTY_NOTICES.md", ".")' in spec


def test_third_party_notices_name_every_runtime_dependency(load_script) -> None:
    notices = load_script("third_party_notices")
    text = (ROOT / "THIRD_PARTY_NOTICES.md").read_text(encoding="utf-8")
    assert notices.missing_from(text) == [], "run python scripts/third_party_notices.py"
    listed = notices.listed_names(text)
    assert {"pyqt6", "pylibjpeg-libjpeg", "torch", "monai", "pydicom"} <= listed
    assert "| PyQt6 | GPL-3.0-only |" in text  # why medscan is GPL: read from PyQt6's own metadata


def test_the_wheel_carries_every_sample_and_the_shipped_models() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    data_files = tool["setuptools"]["data-files"]
    folders = {p.name for p in (ROOT / "samples").iterdir() if p.is_dir()}
    assert {f"share/medscan/samples/{name}" for name in folders} <= set(data_files)
    assert all(data_files[f"share/medscan/samples/{name}"] == [f"samples/{name}/*"] for name in folders)
    assert "models/*.safetensors" in data_files["share/medscan/models"]
