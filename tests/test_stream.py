"""Streamed decoding (medscan.io.stream): middle slice first, requests first, and the very voxels of load_series."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import medscan.io.stream as stream_module
from medscan.io import load
from medscan.io.dicom import list_series, load_series
from medscan.io.stream import SeriesStream, middle_out
from medscan.resources import shared_data_dir
from medscan.scan import MedscanError

ROOT = Path(__file__).resolve().parents[1]
CT = ROOT / "samples" / "ct_abdomen_siemens"
MR = ROOT / "samples" / "mr_brain_t1_sag_siemens"
DATA = shared_data_dir()


def _same_scan(ref, got) -> None:
    """Bit-identical voxels of the same dtype, same geometry, references and warnings."""
    a, b = ref.exact_integers(), got.exact_integers()
    if a is None:
        assert b is None
        a, b = ref.voxels, got.voxels
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ref.affine, got.affine)
    assert (ref.warnings, ref.source_refs, ref.volume_labels) == (got.warnings, got.source_refs, got.volume_labels)


def _streamed(record, workers: int | None = None) -> tuple[SeriesStream, object]:
    stream = SeriesStream(record, workers=workers).start()
    assert stream.wait(120)
    return stream, stream.result()


def test_middle_out_order() -> None:
    assert middle_out(5) == [2, 1, 3, 0, 4]
    assert middle_out(4) == [2, 1, 3, 0]
    assert middle_out(1) == [0]


@pytest.mark.parametrize("folder", [CT, MR], ids=["ct_jpeg2000", "mr"])
def test_streamed_series_is_bit_identical_to_load(folder: Path) -> None:
    stream, got = _streamed(list_series(folder).series[0])
    _same_scan(load(folder), got)
    assert stream.progress() == (stream.total, stream.total) and stream.complete
    assert np.shares_memory(got.exact_integers(), stream.voxels)  # the array decoded into is the Scan's: no copy


def test_streamed_4d_and_float_series_are_bit_identical(tmp_path: Path) -> None:
    folder = DATA / "conformance" / "dcm_qa_enh" / "In"
    if not folder.is_dir():
        pytest.skip(f"{folder}: missing (../shared/data)")
    records = list_series(folder).series
    dtypes = set()
    for record in records:
        try:
            ref = load_series(record)
        except MedscanError:
            continue
        stream, got = _streamed(record)
        _same_scan(ref, got)
        dtypes.add((str(stream.dtype), len(stream.shape) == 4 and stream.shape[0] > 1))
    assert any(d == "float32" for d, _ in dtypes) and any(four_d for _, four_d in dtypes), dtypes


def test_decoding_order_is_middle_out_and_requests_come_first(monkeypatch) -> None:
    order: list[int] = []
    real = stream_module._decode_cells

    def recording(voxels, cells, notes, lock):
        order.append(cells[0][1])
        real(voxels, cells, notes, lock)

    monkeypatch.setattr(stream_module, "_decode_cells", recording)
    stream = SeriesStream(list_series(CT).series[0], workers=1)
    stream.prioritize(0, 0)  # the user scrolled to the first slice before it was due
    stream.prioritize(0, 19)  # ... then to the last: the latest request first
    stream.start()
    assert stream.wait(120) and stream.complete
    assert order[:2] == [19, 0]
    assert order[2:] == [k for k in middle_out(20) if k not in (0, 19)]


def test_wait_ready_returns_while_the_rest_is_still_decoding(monkeypatch) -> None:
    gate = threading.Event()
    real = stream_module._decode_cells

    def held(voxels, cells, notes, lock):
        if cells[0][1] != 10:  # every slice but the middle waits for the gate
            gate.wait(30)
        real(voxels, cells, notes, lock)

    monkeypatch.setattr(stream_module, "_decode_cells", held)
    stream = SeriesStream(list_series(CT).series[0], workers=2).start()
    try:
        assert stream.middle == 10 and stream.wait_ready(0, 10, timeout=60)
        done, total = stream.progress()
        assert done == 1 and total == 20 and not stream.done
        assert stream.ready_mask().sum() == 1 and stream.is_ready(0, 10) and not stream.is_ready(0, 9)
        with pytest.raises(RuntimeError, match="not decoded yet"):
            stream.result()
        reference = load(CT).exact_integers()
        np.testing.assert_array_equal(stream.voxels[0, 10], reference[10])
        assert not stream.voxels[0, 0].any()  # a plane not decoded yet reads as zeros, never as stale memory
    finally:
        gate.set()
    assert stream.wait(120) and stream.complete


def _write_uint16_series(folder: Path, values: list[int]) -> Path:
    """Small uncompressed unsigned 16-bit series, one file per value (its pixels ramp up to that value)."""
    folder.mkdir()
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    for index, top in enumerate(values):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR image storage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MR", 7, index + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(index)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 1.0
        ds.Rows = ds.Columns = 8
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 0
        ds.PixelData = np.linspace(0, top, 64).astype("<u2").tobytes()
        ds.save_as(folder / f"IM{index}.dcm", enforce_file_format=True)
    return folder


def test_a_plane_beyond_int16_restarts_the_stream_as_float32(tmp_path: Path) -> None:
    # int16 is the first guess (integer rescale); the last file's 40000 does not fit, so it is decoded as float32
    folder = _write_uint16_series(tmp_path / "mr", [100, 200, 300, 400, 500, 40000])
    record = list_series(folder).series[0]
    stream, got = _streamed(record, workers=1)
    assert stream.generation == 1 and stream.dtype == np.float32
    ref = load_series(record)
    assert ref.exact_integers() is None and float(ref.voxels.max()) == 40000.0
    _same_scan(ref, got)


def test_a_broken_file_fails_the_stream_as_it_fails_load(tmp_path: Path) -> None:
    folder = _write_uint16_series(tmp_path / "mr", [100, 200, 300, 400])
    record = list_series(folder).series[0]
    broken = folder / "IM3.dcm"
    broken.write_bytes(broken.read_bytes()[:-60])  # truncated pixel data
    with pytest.raises(MedscanError) as expected:
        load_series(record)
    stream = SeriesStream(record, workers=1).start()
    assert stream.wait(60) and stream.done and not stream.complete
    assert isinstance(stream.error, MedscanError)
    with pytest.raises(MedscanError) as got:
        stream.result()
    assert str(got.value) == str(expected.value)


def test_cancel_stops_the_stream() -> None:
    stream = SeriesStream(list_series(CT).series[0])
    stream.cancel()
    stream.start()
    assert stream.wait(10) and stream.done and not stream.complete
    assert stream.progress()[0] == 0
    with pytest.raises(RuntimeError, match="cancelled"):
        stream.result()
