"""The registry's safety rules hold on every road into it: the CLI, a batch job and the window.

Walks the registry: every operation refuses a series of a modality it does not declare (a real ultrasound
image), with one line naming the file, and writes nothing; every Generate operation's output comes back
SYNTHETIC. ``registry.run`` holds these rules once; this proves the three callers cannot get round them.
Inputs are small crops of real held-out MR series so that the walk stays quick on a CPU.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil
from pathlib import Path

import numpy as np
import pytest

from medscan.cli import main
from medscan.io import load, save
from medscan.ops import get, operations, run
from medscan.scan import MedscanError, ProvenanceEntry, Scan

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MR = DATA / "train" / "mr03_brain_t1_2d_sag_siemens_dicom"
BRAIN_T1 = DATA / "paired" / "brain_tcga_fg_6692" / "t1.nii.gz"  # held out, skull-stripped, axial
ULTRASOUND = DATA / "conformance" / "pydicom_data" / "gdcm-US-ALOKA-16.dcm"  # a modality no operation takes

# Parameters each Generate operation needs on the 5-slice crop (slice, row, column indices).
GENERATE_PARAMS: dict[str, dict[str, str]] = {
    "inpaint": {"box": "1,40,40,3,80,90"},
    "fill_slices": {"slices": "2"},
    "motion_correct": {},
    "super_resolve": {"scale": "2"},
    "translate": {"to": "T2", "from": "T1"},
}
BRAIN_INPUT = {"translate"}  # needs a skull-stripped axial brain, not the sagittal crop

pytestmark = pytest.mark.model


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """DICOM folders (batch jobs read folders): an ultrasound image, a 5-slice MR crop, 10 slices of a brain."""
    root = tmp_path_factory.mktemp("inputs")
    us = root / "us"
    us.mkdir()
    shutil.copy(_need(ULTRASOUND), us / ULTRASOUND.name)
    mr = load(_need(MR))
    k = mr.voxels.shape[0] // 2
    affine = mr.affine.copy()
    affine[:3, 3] = mr.index_to_world([[64, 64, k - 2]])[0]
    crop = Scan(np.ascontiguousarray(mr.voxels[k - 2:k + 3, 64:192, 64:192]), affine, modality="MR",
                description="T1 crop", header=mr.header)
    brain = load(_need(BRAIN_T1))
    affine = brain.affine.copy()
    affine[:3, 3] = brain.index_to_world([[0, 0, 70]])[0]
    stack = Scan(np.ascontiguousarray(brain.voxels[70:80]), affine, modality="MR", description="T1 brain")
    folders = {"us": us, "mr": root / "mr", "brain": root / "brain"}
    for scan, name in ((crop, "mr"), (stack, "brain")):
        save(scan.derive(scan.voxels, ProvenanceEntry("crop", {})), folders[name])
    return folders


def _source(name: str) -> str:
    return "brain" if name in BRAIN_INPUT else "mr"


def test_every_generate_operation_is_walked_and_declared_synthetic() -> None:
    generate = {op.name for op in operations("generate")}
    assert generate <= set(GENERATE_PARAMS), "add a case for the new Generate operation"
    assert all(get(name).synthetic for name in generate)
    assert all(not op.accepts("US") for op in operations())


def test_registry_marks_a_generate_result_synthetic_even_when_the_operation_forgets(monkeypatch, inputs) -> None:
    from medscan.ops import registry

    def forgetful(scan: Scan, *, device: str, progress) -> registry.Result:
        return registry.Result(scan.derive(scan.voxels[::-1].copy(), ProvenanceEntry("forgetful", {})))

    operation = registry.Operation(name="forgetful", family="generate", title="Forgetful", summary="flips slices",
                                   params=(), function=forgetful, synthetic=True)
    monkeypatch.setitem(registry._REGISTRY, operation.name, operation)
    assert run("forgetful", load(inputs["mr"])).scan.synthetic
    with pytest.raises(MedscanError, match="forgetful works on CT and MR, not US"):
        run("forgetful", load(inputs["us"]))
    with pytest.raises(ValueError, match="must be declared synthetic"):
        registry.register(registry.Operation(name="undeclared", family="generate", title="", summary="",
                                             params=(), function=forgetful))


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def _flags(params: dict[str, str]) -> list[str]:
    return [item for name, value in params.items() for item in (f"--{name.replace('_', '-')}", value)]


@pytest.mark.parametrize("name", [op.name for op in operations()])
def test_cli_refuses_a_modality_the_operation_does_not_take(name, inputs, tmp_path, capsys) -> None:
    operation = get(name)
    out = tmp_path / "out.nii.gz"
    params = GENERATE_PARAMS.get(name, {})
    assert main([operation.family, name.replace("_", "-"), str(inputs["us"]), "-o", str(out), *_flags(params)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("medscan: ") and "\n" not in err
    assert f"{name} works on {' and '.join(operation.modalities)}, not US" in err and ULTRASOUND.name in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", sorted(GENERATE_PARAMS))
def test_cli_generate_output_is_synthetic(name, inputs, tmp_path, capsys) -> None:
    out = tmp_path / "out.nii.gz"
    assert main(["generate", name.replace("_", "-"), str(inputs[_source(name)]), "-o", str(out),
                 *_flags(GENERATE_PARAMS[name])]) == 0
    written = tmp_path / "out_synthetic.nii.gz"
    assert not out.exists() and str(written) in capsys.readouterr().out
    assert load(written).synthetic


# ------------------------------------------------------------------------------------------------
# Batch jobs (a local worker process, as `medscan batch run` uses)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    from medscan.batch.executors import LocalExecutor
    from medscan.db.store import Database

    database = Database.create(tmp_path_factory.mktemp("db") / "studies.db", "batch key", scrypt_n=2**12)
    database.add_user("tech", "technician", "tech pass")
    database.login("tech", "tech pass")
    executor = LocalExecutor(1)
    yield database, executor
    executor.close()
    database.close()


@pytest.mark.parametrize("name", [op.name for op in operations()])
def test_batch_refuses_the_wrong_modality_and_marks_generate_output_synthetic(name, inputs, batch,
                                                                              tmp_path) -> None:
    from medscan.batch.jobs import create_job
    from medscan.batch.runner import run_job
    from medscan.batch.spec import parse_spec

    database, executor = batch
    operation = get(name)
    folders = [inputs["us"]] + ([inputs[_source(name)]] if operation.family == "generate" else [])
    out = tmp_path / "out"
    spec = parse_spec({"operation": name, "inputs": [{"folder": str(f)} for f in folders],
                       "parameters": GENERATE_PARAMS.get(name, {}), "output": {"folder": str(out), "format": "nifti"}})
    status = run_job(database, create_job(database, spec, "safety test"), executor, "batch key")
    errors = [error for _, error in status.failures]
    assert len(errors) == 1 and f"{name} works on {' and '.join(operation.modalities)}, not US" in errors[0], errors
    written = sorted(p for p in out.glob("*.nii.gz") if not p.name.endswith(("_uncertainty.nii.gz",
                                                                              "_generated.nii.gz")))
    if operation.family == "generate":
        assert status.counts == {"done": 1, "failed": 1}
        assert len(written) == 1 and "synthetic" in written[0].name and load(written[0]).synthetic
    else:
        assert status.counts == {"failed": 1} and written == []


# ------------------------------------------------------------------------------------------------
# The window
# ------------------------------------------------------------------------------------------------
@pytest.mark.gui
def test_window_refuses_the_wrong_modality_and_marks_generate_output_synthetic(inputs, qtbot, tmp_path,
                                                                              monkeypatch) -> None:
    pytest.importorskip("PyQt6.QtWidgets")
    from PyQt6.QtCore import QSettings
    from PyQt6.QtWidgets import QApplication, QMessageBox

    from ui.qt_main_window import MainWindow
    from ui.qt_theme import apply_dark_theme

    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(QMessageBox, "critical",
                        staticmethod(lambda _parent, title, text, *a, **k: shown.append((title, text))))
    apply_dark_theme(QApplication.instance())
    window = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    try:
        us = load(inputs["us"])
        with qtbot.waitSignal(window.scanShown, timeout=5000):
            window.show_scan(us)
        for operation in operations():
            panel = window.opsPanel.panels[operation.family]
            panel.select(operation.name)
            assert not panel.preview_button.isEnabled() and not panel.run_button.isEnabled(), operation.name
            # Even asked directly (a shortcut, a script), the worker refuses through the registry.
            job = window.workflow.run_series(operation.name, GENERATE_PARAMS.get(operation.name, {}))
            assert job is not None
            with qtbot.waitSignal(job.finished, timeout=60_000):
                pass
            assert shown and f"{operation.name} works on" in shown[-1][1] and "not US" in shown[-1][1], shown
        assert window.opsPanel.results.entries() == []
        for name, params in sorted(GENERATE_PARAMS.items()):
            source = load(inputs[_source(name)])
            with qtbot.waitSignal(window.scanShown, timeout=5000):
                window.show_scan(source)
            with qtbot.waitSignal(window.workflow.resultShown, timeout=120_000) as blocker:
                assert window.workflow.run_series(name, params) is not None
            entry = blocker.args[0]
            assert entry.operation.name == name and entry.synthetic and entry.result.scan.synthetic
            assert "SYNTHETIC" in entry.export_stem() and entry.label().startswith("SYNTHETIC")
    finally:
        window.close()
