"""clean adapt: self-supervised fine-tuning on the study itself, bounded in time, geometry kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medscan.io import load
from medscan.ops import run
from medscan.ops.study_adapt import _neighbour_pair, _subsample

pytestmark = pytest.mark.model

SAMPLE_CT = Path(__file__).resolve().parents[1] / "samples" / "ct_abdomen_siemens"


def test_neighbour_sub_images_pick_two_different_adjacent_pixels() -> None:
    y = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    g1, g2, picks = _neighbour_pair(y, torch.Generator().manual_seed(0))
    assert g1.shape == g2.shape == (2, 1, 4, 4)
    difference = (g2 - g1).abs()  # same row: 1 apart; same column: 8 apart; never the same pixel
    assert set(difference.unique().tolist()) <= {1.0, 8.0}
    same1, same2 = _subsample(y, picks)  # the same picks applied to another image of that size
    torch.testing.assert_close(same1, g1)
    torch.testing.assert_close(same2, g2)


def test_adapt_is_time_bounded_and_keeps_units_and_geometry() -> None:
    scan = load(SAMPLE_CT)
    calls: list[tuple[int, int]] = []
    result = run("adapt", scan, seconds=5.0, progress=lambda done, total: calls.append((done, total)))
    out = result.scan
    assert out.voxels.shape == scan.voxels.shape and np.array_equal(out.affine, scan.affine)
    assert out.units == "HU" and not out.synthetic
    entry = out.provenance[-1]
    assert entry.operation == "adapt" and entry.parameters["steps"] >= 1
    assert entry.model_version.endswith("+adapted")
    assert calls[-1][0] == calls[-1][1]  # progress reaches the end
    assert result.fidelity is not None and "method_noise" in result.maps
    # A mean shift over a homogeneous region would be invented signal: HU stay put.
    assert abs(float(out.voxels.mean() - scan.voxels.mean())) < 1.0
