"""Contrast translation (``medscan generate translate``): better than the best intensity look-up table on the subject
the shipped model never saw, in a direction its leave-one-subject-out verdict supports; a direction the verdict
does not support refused with its figures; geometry kept, SYNTHETIC with an uncertainty map, and every refusal one
line with nothing written. Inputs are 10-slice stacks of the held-out MS subject (paired/brain_ms_patient19),
cropped to the brain, so the whole file stays quick on a CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medscan.cli import main
from medscan.io import load
from medscan.io.nifti import write_nifti
from medscan.resources import shared_data_dir
from medscan.scan import MedscanError

ROOT = Path(__file__).resolve().parents[1]
DATA = shared_data_dir()
HELDOUT = DATA / "paired" / "brain_ms_patient19"  # the shipped model (fold ms19) never saw this subject
SAMPLE_CT = ROOT / "samples" / "ct_abdomen_siemens"
SAMPLE_MR_SAG = ROOT / "samples" / "mr_brain_t1_sag_siemens"
SLICES = slice(95, 105)  # axial planes through the periventricular lesions

pytestmark = [pytest.mark.model,
              pytest.mark.skipif(not HELDOUT.is_dir(), reason="shared paired data not present")]


def _crop(name: str, folder: Path, out_name: str) -> Path:
    """Slices SLICES of a held-out contrast, cropped in-plane to the brain plus a margin, geometry kept."""
    scan = load(HELDOUT / name)
    brain = (scan.voxels != 0).any(axis=0)
    rows, cols = np.flatnonzero(brain.any(axis=1)), np.flatnonzero(brain.any(axis=0))
    r0, r1 = max(rows[0] - 24, 0), rows[-1] + 25  # the brain checks want >= 40% background
    c0, c1 = max(cols[0] - 24, 0), cols[-1] + 25
    affine = scan.affine.copy()
    affine[:3, 3] = scan.index_to_world([[c0, r0, SLICES.start]])[0]
    scan.voxels = np.ascontiguousarray(scan.voxels[SLICES, r0:r1, c0:c1])
    scan.affine = affine
    path = folder / out_name
    write_nifti(scan, path)
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("paired")
    return {c: _crop(f"{c.lower()}.nii.gz", folder, f"heldout_{c.lower()}.nii.gz") for c in ("T1", "T2", "FLAIR")}


@pytest.fixture(scope="module")
def card() -> dict:
    from medscan.nets.weights import load_card

    return load_card("translate_mr2d").data


def _supported(card: dict) -> list[tuple[str, str]]:
    """Directions the shipped verdict supports whose source and target the stack has, best worst-fold first."""
    verdicts = card["evaluation"]["verdicts"]
    ok = [tuple(k.split("->")) for k, v in verdicts.items() if v["supported"]]
    ok = [(a, b) for a, b in ok if a in ("T1", "T2", "FLAIR") and b in ("T1", "T2", "FLAIR")]
    return sorted(ok, key=lambda d: -verdicts[f"{d[0]}->{d[1]}"]["worst_fold_psnr"]["PSNR_dB"])


@pytest.fixture(scope="module")
def translated(stack, card):
    """(input scan, result, (source, target)) for the supported direction with the largest worst-fold gain."""
    from medscan.ops import run

    source, target = _supported(card)[0]
    scan = load(stack[source])
    return scan, run("translate", scan, to=target, device="cpu"), (source, target)


def _normalised(volume: np.ndarray, brain: np.ndarray) -> np.ndarray:
    return np.clip(volume, 0, None) / float(np.median(volume[brain]))


def test_translation_beats_the_lookup_table_on_the_held_out_subject(stack, translated, card) -> None:
    from medscan.train.metrics import psnr, ssim
    from medscan.train.task_translate import brain_values, fit_luts, load_subject

    scan, result, (a, b) = translated
    brain = (scan.voxels != 0) & (load(stack[b]).voxels != 0)
    real = _normalised(load(stack[b]).voxels, brain)
    ours = result.scan.voxels / result.scan.provenance[-1].parameters["input_brain_median"]
    source = _normalised(scan.voxels, scan.voxels != 0)
    loaded = [load_subject(s, (a, b)) for s in card["training"]["train_subjects"]]  # the LUTs see what the model saw
    vols, brains = [v for v, _ in loaded], [m for _, m in loaded]
    luts = [lut(source, source[scan.voxels != 0]) * brain
            for lut in fit_luts(brain_values(vols, brains, a), brain_values(vols, brains, b))]
    lut_psnr = max(psnr(real, lut, brain) for lut in luts)
    lut_ssim = max(np.mean([ssim(real[k], lut[k], brain[k]) for k in range(len(real))]) for lut in luts)
    ours_psnr = psnr(real, ours, brain)
    ours_ssim = np.mean([ssim(real[k], ours[k], brain[k]) for k in range(len(real))])
    # Better than the strongest of the four tables (chosen on this very stack, which favours the tables); the issue's
    # +2 dB / +0.05 SSIM target is NOT met (see the model card), so only an improvement is asserted.
    assert ours_psnr > lut_psnr, (a, b, ours_psnr, lut_psnr)
    assert ours_ssim > lut_ssim, (a, b, ours_ssim, lut_ssim)


def test_output_keeps_geometry_and_is_synthetic_with_uncertainty(translated) -> None:
    scan, result, (a, b) = translated
    out = result.scan
    assert out.voxels.shape == scan.voxels.shape
    np.testing.assert_array_equal(out.affine, scan.affine)
    assert out.synthetic and result.synthetic and f"{b} from {a}" in out.description
    entry = out.provenance[-1]
    assert entry.operation == "translate" and entry.parameters["from"] == a and entry.parameters["to"] == b
    assert "leave-one-subject-out folds" in entry.parameters["held_out"]  # the evidence travels with the result
    assert entry.parameters["from_source"] in ("description", "file name")  # auto-detected from the name
    spread = result.maps["uncertainty"]
    brain = scan.voxels != 0
    assert spread.shape == out.voxels.shape and spread.min() >= 0 and spread[brain].mean() > 0
    assert np.all(out.voxels[~brain] == 0) and np.all(spread[~brain] == 0)
    # On the input's scale: typical brain tissue keeps its value (brain medians agree within 25%).
    ratio = np.median(out.voxels[brain]) / np.median(scan.voxels[brain])
    assert 0.75 < ratio < 1.25, ratio


def test_cli_writes_a_supported_direction_with_its_uncertainty_in_the_input_geometry(stack, card, tmp_path,
                                                                                       capsys) -> None:
    a, b = _supported(card)[-1]  # the weakest supported direction: the CLI runs it like any other
    out = tmp_path / "translated.nii.gz"
    assert main(["generate", "translate", str(stack[a]), "-o", str(out), "--to", b, "--from", a,
                 "--modality", "MR"]) == 0
    written = tmp_path / "translated_synthetic.nii.gz"
    spread = tmp_path / "translated_synthetic_uncertainty.nii.gz"
    assert written.exists() and spread.exists() and not out.exists()
    assert str(written) in capsys.readouterr().out
    result, source = load(written), load(stack[a])
    assert result.synthetic and result.voxels.shape == source.voxels.shape
    np.testing.assert_allclose(result.affine, source.affine, atol=1e-5)
    assert load(spread).voxels.max() > 0


def _refused(args: list[str], tmp_path: Path, capsys, *words: str) -> None:
    out = tmp_path / "out" / "result.nii.gz"
    before = set(tmp_path.rglob("*"))
    assert main(["generate", "translate", *args, "-o", str(out)]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0] and all(w in lines[0] for w in words), lines[0]
    assert set(tmp_path.rglob("*")) == before  # nothing written


def test_refuses_ct_for_an_mr_contrast(tmp_path, capsys) -> None:
    _refused([str(SAMPLE_CT), "--to", "T2"], tmp_path, capsys, "ct_abdomen_siemens", "translate works on MR", "not CT")


def test_refuses_a_series_that_is_not_a_skull_stripped_axial_brain(stack, tmp_path, capsys) -> None:
    _refused([str(SAMPLE_MR_SAG), "--to", "T2", "--from", "T1"], tmp_path, capsys, "sagittal")
    # The same held-out brain with noise where the skull-stripping left zeros: not skull-stripped.
    scan = load(stack["T1"])
    rng = np.random.default_rng(0)
    scan.voxels = np.where(scan.voxels != 0, scan.voxels,
                           np.abs(rng.normal(0, 3, scan.voxels.shape))).astype(np.float32)
    noisy = tmp_path / "src" / "t1_unstripped.nii.gz"
    noisy.parent.mkdir()
    write_nifti(scan, noisy)
    _refused([str(noisy), "--to", "T2"], tmp_path, capsys, "t1_unstripped", "skull-strip")


def test_refuses_same_contrast_untrained_direction_and_unknown_source(stack, tmp_path, capsys) -> None:
    _refused([str(stack["T2"]), "--to", "T2"], tmp_path, capsys, "heldout_t2", "already is T2")
    _refused([str(stack["FLAIR"]), "--to", "T1"], tmp_path, capsys, "heldout_flair", "FLAIR->T1", "not trained")
    unnamed = tmp_path / "src" / "brain_series.nii.gz"
    unnamed.parent.mkdir()
    unnamed.write_bytes(stack["T1"].read_bytes())
    _refused([str(unnamed), "--to", "T2"], tmp_path, capsys, "brain_series", "--from")


def test_refuses_each_direction_its_held_out_verdict_does_not_support(stack, card, tmp_path, capsys) -> None:
    refused = [(k, v) for k, v in card["evaluation"]["verdicts"].items() if not v["supported"]]
    assert refused, "no refused direction: this test needs the card to record one"
    for direction, verdict in refused:
        a, b = direction.split("->")
        if a not in stack:
            continue
        figure = f"{verdict['worst_fold_psnr']['PSNR_dB']:+.2f} dB"
        _refused([str(stack[a]), "--to", b, "--from", a], tmp_path, capsys, f"heldout_{a.lower()}", direction,
                 "does not beat an intensity look-up table", figure)


def test_a_direction_without_a_held_out_verdict_is_refused(card) -> None:
    from medscan.ops.translate import supported_directions, unsupported_reason

    bare = {**card, "evaluation": {}}
    assert "no held-out evaluation for T1->T2" in unsupported_reason(bare, "T1", "T2")
    assert supported_directions(bare) == []
    verdicts = card["evaluation"]["verdicts"]
    assert set(verdicts) == {f"{a}->{b}" for a, b in card["directions"]}
    assert supported_directions(card) == [tuple(d) for d in card["directions"] if verdicts["->".join(d)]["supported"]]


def test_the_window_is_told_which_directions_run(card) -> None:
    """The registry's availability line (shown beside the operation's summary) names every supported direction
    and every refused one, from the same verdicts the operation applies."""
    from medscan.ops import get
    from medscan.ops.translate import supported_directions

    note = get("translate").availability_note()
    supported = ["->".join(d) for d in supported_directions(card)]
    refused = ["->".join(d) for d in card["directions"] if "->".join(d) not in supported]
    assert supported and refused  # the shipped card has both
    head, _, tail = note.partition("refused")
    assert all(d in head for d in supported) and all(d in tail for d in refused)
    assert get("denoise").availability_note() == ""


def test_refuses_ct_to_ct(tmp_path, capsys) -> None:
    _refused([str(SAMPLE_CT), "--to", "CT"], tmp_path, capsys, "translate works on MR, not CT")


@pytest.mark.parametrize(("text", "contrast"), [
    ("t1.nii.gz", "T1"), ("AX T1 POST GD", "T1c"), ("t1ce", "T1c"), ("T1_MPRAGE", "T1"), ("Ax T2 FSE", "T2"),
    ("T2 FLAIR axial", "FLAIR"), ("TCGA_fla_bet", "FLAIR"), ("t2_star_gre", None), ("DWI b1000", None),
    ("T1+C", "T1c"), ("brain", None)])
def test_source_contrast_from_names(text, contrast) -> None:
    from medscan.ops.translate import contrast_from_text

    assert contrast_from_text(text) == contrast


def test_shipped_model_card_matches_its_weights_and_split() -> None:
    from medscan.nets.weights import load_model

    model, card = load_model("translate_mr2d")
    assert card.data["task"] == "translate" and card.data["sha256"]
    assert sum(p.numel() for p in model.parameters()) == card.data["parameters"] <= 1_500_000
    assert card.data["training"]["train_subjects"] == ["du_7294", "fg_6692", "ms07"]
    assert card.data["training"]["heldout_subject"] == "ms19"
    for direction in (["T1", "T2"], ["T1", "FLAIR"], ["T2", "FLAIR"]):
        assert direction in card.data["directions"]
    # Every verdict rests on all four leave-one-subject-out folds, across both centres.
    for verdict in card.data["evaluation"]["verdicts"].values():
        assert verdict["folds"] == ["du_7294", "fg_6692", "ms07", "ms19"]


def test_errors_are_one_line_medscan_errors(stack) -> None:
    from medscan.ops import run

    with pytest.raises(MedscanError) as info:
        run("translate", load(stack["T1"]), to="T1")
    assert "\n" not in str(info.value) and "heldout_t1" in str(info.value)


def test_to_ct_dispatches_to_the_experimental_pseudo_ct(tmp_path) -> None:
    pytest.importorskip("medscan.ops.pseudo_ct")
    out = tmp_path / "pct.nii.gz"
    assert main(["generate", "translate", str(SAMPLE_MR_SAG), "-o", str(out), "--to", "CT"]) == 0
    result, source = load(tmp_path / "pct_synthetic.nii.gz"), load(SAMPLE_MR_SAG)
    assert result.synthetic and result.voxels.shape == source.voxels.shape
    np.testing.assert_allclose(result.affine, source.affine, atol=1e-4)
    assert result.voxels.min() < -500  # Hounsfield units: air around the head
