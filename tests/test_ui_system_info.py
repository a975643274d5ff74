"""The status bar's device and memory probes (no Qt, no torch import)."""

from __future__ import annotations

import sys

from ui import system_info


def test_cuda_build_is_read_from_torch_version_file():
    assert system_info.cuda_from_version_file("cuda: Optional[str] = '12.4'\nhip = None\n") == "12.4"
    assert system_info.cuda_from_version_file("__version__ = '2.13.0+cpu'\ncuda: Optional[str] = None\n") is None


def test_gpu_names_come_from_the_driver(tmp_path):
    gpu = tmp_path / "0000:01:00.0"
    gpu.mkdir()
    (gpu / "information").write_text("Model: \t\t NVIDIA H100 80GB HBM3\nIRQ: 42\n")
    assert system_info.nvidia_gpu_names(tmp_path) == ["NVIDIA H100 80GB HBM3"]
    assert system_info.nvidia_gpu_names(tmp_path / "none") == []


def test_device_guess_never_imports_torch(monkeypatch):
    if "torch" in sys.modules:  # another test imported it: the guess then asks torch itself
        return
    monkeypatch.setattr(system_info, "torch_cuda_build", lambda: "12.4")
    monkeypatch.setattr(system_info, "nvidia_gpu_names", lambda: ["NVIDIA H100 80GB HBM3"])
    guess = system_info.guess_device()
    assert guess.label == "CUDA: NVIDIA H100 80GB HBM3" and not guess.confirmed and guess.may_have_cuda
    monkeypatch.setattr(system_info, "torch_cuda_build", lambda: None)
    assert system_info.guess_device().label == "CPU"
    assert "torch" not in sys.modules


def test_memory_and_sizes():
    assert system_info.process_memory_bytes() > 10 * 2**20
    assert system_info.format_bytes(512) == "512 B"
    assert system_info.format_bytes(3 * 2**30) == "3.0 GiB"
    assert system_info.format_bytes(None) == "n/a"
