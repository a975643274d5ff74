"""Bad input gets one clear line naming the file and the problem: no traceback, nothing half-written."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from conformance import CONFORMANCE, DATA

from medscan.cli import main
from medscan.io import list_series, load
from medscan.scan import MedscanError

CT_DICOM = DATA / "train" / "ct01_upper_abdomen_siemens_dicom"
MR_DICOM = DATA / "train" / "mr03_brain_t1_2d_sag_siemens_dicom"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medscan.cli", *args], capture_output=True, text=True, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("medscan: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _ct_copy(tmp_path: Path, n: int = 20) -> Path:
    folder = tmp_path / "ct"
    folder.mkdir()
    for src in sorted(CT_DICOM.iterdir())[:n]:
        shutil.copy(src, folder / src.name)
    return folder


def test_truncated_file_is_skipped_with_a_warning_and_the_rest_loads(tmp_path) -> None:
    folder = _ct_copy(tmp_path)
    victim = sorted(folder.iterdir())[5]
    victim.write_bytes(victim.read_bytes()[:700])  # cut inside the header
    listing = list_series(folder)
    assert len(listing.skipped) == 1 and victim.name in listing.skipped[0]
    scan = load(folder)
    assert scan.voxels.shape[0] == 19
    assert any("skipped 1" in w for w in scan.warnings)
    assert any("non-uniform slice spacing" in w for w in scan.warnings)  # the gap left by the lost slice


def test_truncated_pixel_data_names_the_file(tmp_path) -> None:
    folder = _ct_copy(tmp_path, 3)
    victim = sorted(folder.iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:-20000])  # header intact, JPEG 2000 stream cut short
    with pytest.raises(MedscanError) as info:
        load(folder)
    assert victim.name in str(info.value)
    result = run_cli("convert", str(folder), "-o", str(tmp_path / "out.nii.gz"))
    assert_one_line_error(result, victim.name)
    assert not (tmp_path / "out.nii.gz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".medscan")]


def test_file_without_pixel_data(tmp_path) -> None:
    ds = pydicom.dcmread(sorted(MR_DICOM.iterdir())[0])
    del ds.PixelData
    path = tmp_path / "nopixels.dcm"
    ds.save_as(path)
    result = run_cli("convert", str(path), "-o", str(tmp_path / "x.nii.gz"))
    assert_one_line_error(result, "nopixels.dcm", "no pixel data")


def test_folder_with_nothing_readable(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.bin").write_bytes(b"\x00" * 1000)
    result = run_cli("info", str(tmp_path))
    assert_one_line_error(result, str(tmp_path), "no readable DICOM series")
    assert run_cli("info", str(tmp_path / "missing")).returncode != 0


def test_inconsistent_matrix_sizes_split_instead_of_mixing(tmp_path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    files = sorted(MR_DICOM.iterdir())
    for src in files[:6]:
        shutil.copy(src, folder / src.name)
    ds = pydicom.dcmread(files[6])
    ds.PixelData = ds.pixel_array[:128, :128].copy().tobytes()
    ds.Rows, ds.Columns = 128, 128
    ds.save_as(folder / "odd.dcm")
    listing = list_series(folder)
    assert sorted(len(s.frames) for s in listing.series) == [1, 6]
    result = run_cli("convert", str(folder), "-o", str(tmp_path / "x.nii.gz"))
    assert_one_line_error(result, "2 series found", "--series")
    chosen = listing.series[0].key
    assert run_cli("convert", str(folder), "--series", chosen, "-o", str(tmp_path / "x.nii.gz")).returncode == 0


def test_unknown_transfer_syntax(tmp_path) -> None:
    ds = pydicom.dcmread(CONFORMANCE / "dcm_qa_ts" / "In" / "5.dcm")
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.2.1143.999"  # a private syntax nobody decodes
    path = tmp_path / "weird.dcm"
    ds.save_as(path, implicit_vr=False, little_endian=True, enforce_file_format=True)
    result = run_cli("convert", str(path), "-o", str(tmp_path / "x.nii.gz"))
    assert_one_line_error(result, "weird.dcm")
    assert not (tmp_path / "x.nii.gz").exists()


def test_missing_geometry_is_refused_not_guessed(tmp_path) -> None:
    folder = _ct_copy(tmp_path, 4)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        ds.save_as(path)
    with pytest.raises(MedscanError, match="refusing to guess"):
        load(folder)


def test_existing_output_is_never_overwritten_by_a_failed_run(tmp_path) -> None:
    out = tmp_path / "keep.nii.gz"
    out.write_bytes(b"precious")
    assert main(["convert", str(tmp_path / "nothing-here"), "-o", str(out)]) == 1
    assert out.read_bytes() == b"precious"


def test_unknown_series_lists_the_choices(capsys) -> None:
    assert main(["convert", str(MR_DICOM), "--series", "99", "-o", "/tmp/never.nii.gz"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no series '99'" in err and "have: 3" in err
