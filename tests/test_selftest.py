"""The installation self-test, run from source the way the bundle runs it: every check passes on a good
install, and a damaged one fails loudly, one line per check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medscan import resources, selftest

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parent.parent
TINY_DENOISER = {
    "kind": "residual_denoiser",
    "backbone": {"arch": "UNet", "spatial_dims": 2, "in_channels": 2, "out_channels": 1,
                 "channels": [4, 8], "strides": [2], "num_res_units": 0},
}


@pytest.fixture(scope="module")
def shipped_models(tmp_path_factory) -> Path:
    """A models/ folder holding a tiny stand-in for the shipped denoiser (real card, real hash)."""
    torch = pytest.importorskip("torch")
    from medscan.nets.builders import build_network
    from medscan.nets.weights import save_model

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    card = {"name": "denoise_unet2d", "version": "test", "task": "denoise", "network": TINY_DENOISER}
    save_model(build_network(TINY_DENOISER), card, "denoise_unet2d", folder)
    return folder


def outcomes(text: str) -> dict[str, str]:
    """{'models': 'ok', 'database': 'FAIL', ...} from the report's check lines."""
    rows = [line.split() for line in text.splitlines() if line.startswith("  ")]
    return {row[1]: row[0] for row in rows}


def test_resources_are_found_at_the_checkout_root_or_in_the_bundle(monkeypatch, tmp_path) -> None:
    assert resources.resource_path("samples", "ct_abdomen_siemens") == ROOT / "samples" / "ct_abdomen_siemens"
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resources.resource_path("models") == tmp_path / "models"


def test_every_check_passes_with_shipped_models(monkeypatch, capsys, shipped_models) -> None:
    monkeypatch.setenv("MEDSCAN_MODELS", str(shipped_models))
    assert selftest.run_self_test() == 0
    report = capsys.readouterr().out
    assert outcomes(report) == {name: "ok" for name in ("imports", "models", "decoders", "sample", "denoise",
                                                        "seg", "database")}
    assert "denoise_unet2d" in report and "HU -1024.." in report
    assert report.splitlines()[-1].startswith("self-test passed")


def test_a_tampered_weights_file_fails_the_model_checks_and_only_those(monkeypatch, capsys, shipped_models,
                                                                      tmp_path) -> None:
    for path in shipped_models.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    weights = tmp_path / "denoise_unet2d.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setenv("MEDSCAN_MODELS", str(tmp_path))
    from medscan.ops import inference

    monkeypatch.setattr(inference, "_MODEL_CACHE", {})  # the good model loaded by an earlier test
    assert selftest.run_self_test() == 1
    report = capsys.readouterr().out
    assert outcomes(report) == {"imports": "ok", "models": "FAIL", "decoders": "ok", "sample": "ok", "denoise": "FAIL",
                                "seg": "ok", "database": "ok"}
    (models_line,) = [line for line in report.splitlines() if "FAIL models" in line]
    assert "does not match the model card" in models_line
    assert report.splitlines()[-1].startswith("self-test FAILED: models, denoise")


def test_without_models_the_stack_is_still_checked_and_only_denoise_skips(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setenv("MEDSCAN_MODELS", str(tmp_path / "absent"))
    assert selftest.run_self_test() == 0
    report = capsys.readouterr().out
    result = outcomes(report)
    assert result["models"] == "ok" and "throwaway network" in report
    assert result["denoise"] == "skip" and result["database"] == "ok"


def test_gui_self_test_renders_the_sample_offscreen(tmp_path) -> None:
    # No models here: the model checks are covered above, and skipping them keeps torch out of this process.
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT),
           "MEDSCAN_MODELS": str(tmp_path / "absent")}
    result = subprocess.run([sys.executable, "-m", "ui.app", "--self-test"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcomes(result.stdout)["gui"] == "ok"
    assert "1440x900" in result.stdout


def test_cli_self_test_needs_no_command_but_other_use_still_does() -> None:
    env = {**os.environ, "MEDSCAN_MODELS": str(ROOT / "no-models-here")}  # fast: no torch
    result = subprocess.run([sys.executable, "-m", "medscan.cli", "--self-test"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gui" not in outcomes(result.stdout)
    bare = subprocess.run([sys.executable, "-m", "medscan.cli"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert bare.returncode == 2 and "required: command" in bare.stderr
