"""Translate (a Generate operation): a contrast that was not acquired, predicted from one that was.

MR -> MR: the conditional pix2pix-style translator ``translate_mr2d`` (trained on four skull-stripped brains from
two centres, two glioma and two MS subjects, and judged leave-one-subject-out; see its card) predicts T1 -> T2,
T1 -> FLAIR, T2 -> FLAIR, T2 -> T1, T1c -> T1 and T1 -> T1c slice by slice on axial 1 mm planes, but only the
directions whose held-out verdict is SUPPORTED run: a direction that did not beat an intensity look-up table on
every held-out subject is refused with its figures (``unsupported_reason``). MR -> CT (``--to CT``) is the
experimental unpaired pseudo-CT of ``medscan.ops.pseudo_ct``.

Intensity scale: MR has arbitrary units, so the output is written on the INPUT's scale: the model predicts the
target contrast with the brain's median at 1 (as in training) and that is multiplied by the input's own brain
median, so typical brain tissue has the same value in input and output (CSF in a T2 output then sits at about
3-4 x that). Outside the brain (the zero region of the skull-stripped input) the output is 0. Every pixel is
generated: the uncertainty map is the spread over the four flipped copies of each slice, in output units.

The model only knows skull-stripped axial brain MR of the contrasts it was trained on: a CT, a series that is not
a skull-stripped brain, an unknown or identical source contrast, or an untrained direction is refused.
"""

from __future__ import annotations

import numpy as np

from medscan import __version__
from medscan.ops.catalog import TRANSLATE_MODEL
from medscan.ops.contrast import contrast_from_text
from medscan.ops.registry import ProgressCallback, Result
from medscan.scan import MedscanError, ProvenanceEntry, Scan

MIN_ZERO_BACKGROUND = 0.3  # a skull-stripped volume is exactly 0 outside the brain; raw MR background is noise
CHUNK = 8  # planes per forward pass



# -- which contrast is the input? ------------------------------------------------------------------------------------
def detect_contrast(scan: Scan) -> tuple[str, str]:
    """(contrast, what said so) from SeriesDescription, ProtocolName, the description and the file name.

    Raises a one-line MedscanError when none of them names a contrast, or when they disagree.
    """
    from pathlib import Path

    header = scan.header
    texts = {"SeriesDescription": str(getattr(header, "SeriesDescription", "") or "") if header is not None else "",
             "ProtocolName": str(getattr(header, "ProtocolName", "") or "") if header is not None else "",
             "description": scan.description or "",
             "file name": Path(scan.source_path).name if scan.source_path else ""}
    found = {key: contrast_from_text(text) for key, text in texts.items() if text}
    named = {key: value for key, value in found.items() if value}
    kinds = set(named.values())
    if not kinds:
        raise MedscanError(scan.where, "cannot tell the source contrast from the series description, protocol or "
                                         "file name — give --from T1|T1c|T2|FLAIR")
    if len(kinds) > 1:
        said = ", ".join(f"{k} says {v}" for k, v in named.items())
        raise MedscanError(scan.where, f"conflicting source contrast ({said}) — give --from")
    key = next(iter(named))
    return named[key], key


# -- what the model was made for -------------------------------------------------------------------------------------
def check_translatable(scan: Scan, source: str, target: str, card: dict) -> None:
    """Refuse what the translator never saw: CT, untrained directions, anything but a skull-stripped axial brain."""
    from medscan.nets.volumes import require_skull_stripped_brain

    where = scan.where
    if scan.modality == "CT" or scan.units == "HU":
        raise MedscanError(where, f"translate --to {target} is an MR contrast model; this series is CT")
    if scan.modality != "MR":
        raise MedscanError(where, f"translate needs an MR series, not {scan.modality or 'an unknown modality'}")
    if source == target:
        raise MedscanError(where, f"the series already is {source} (from and to are the same contrast)")
    trained = [tuple(d) for d in card.get("directions", [])]
    if (source, target) not in trained:
        names = ", ".join(f"{a}->{b}" for a, b in trained)
        raise MedscanError(where, f"{TRANSLATE_MODEL} was not trained for {source}->{target} (trained: {names})")
    refusal = unsupported_reason(card, source, target)
    if refusal:
        raise MedscanError(where, refusal)
    require_skull_stripped_brain(scan, "translate", max_thickness=3.0)
    zero = float(np.mean(scan.voxels == 0))
    if zero < MIN_ZERO_BACKGROUND:
        raise MedscanError(where, f"translate needs a skull-stripped brain (exactly 0 outside the brain); only "
                                  f"{100 * zero:.0f}% of this series is zero — skull-strip it first")


def unsupported_reason(card: dict, source: str, target: str) -> str | None:
    """Why a trained direction is refused, or None when its held-out evaluation supports it.

    A direction ships only if, in every leave-one-subject-out fold, the model beat the best intensity look-up
    table fitted on the fold's training subjects, in PSNR and in SSIM (``scripts/evaluate_translate.py --cards``
    writes the verdicts into the card). A contrast a look-up table predicts as well is not worth a network's
    inventions, and a direction nobody evaluated is not offered at all.
    """
    key, name = f"{source}->{target}", card.get("name", TRANSLATE_MODEL)
    verdict = ((card.get("evaluation") or {}).get("verdicts") or {}).get(key)
    if verdict is None:
        return f"{name} has no held-out evaluation for {key}; refused rather than offered untested"
    if verdict.get("supported"):
        return None
    psnr, ssim = verdict["worst_fold_psnr"], verdict["worst_fold_ssim"]
    return (f"{name} does not beat an intensity look-up table for {key} on subjects it never saw "
            f"({psnr['PSNR_dB']:+.2f} dB PSNR on {psnr['test']}, {ssim['SSIM']:+.3f} SSIM on {ssim['test']}); "
            "refused rather than shipped")


def supported_directions(card: dict) -> list[tuple[str, str]]:
    """The trained directions the held-out evaluation supports (what the operation will run)."""
    return [(a, b) for a, b in (tuple(d) for d in card.get("directions", []))
            if unsupported_reason(card, a, b) is None]


def availability(model: str = TRANSLATE_MODEL) -> str:
    """One line for the window: which MR directions the shipped model runs, and that the others are refused."""
    from medscan.nets.weights import load_card

    try:
        card = load_card(model).data
    except MedscanError as exc:
        return f"No MR translation available: {exc}"
    supported = supported_directions(card)
    refused = [d for d in (tuple(d) for d in card.get("directions", [])) if d not in supported]

    def named(directions: list[tuple[str, str]]) -> str:
        return ", ".join(f"{a}->{b}" for a, b in directions)

    line = f"{model} runs {named(supported) or 'no MR direction'}"
    if refused:
        line += f"; refused ({'it does' if len(refused) == 1 else 'they do'} not beat a look-up table on " \
                f"unseen subjects): {named(refused)}"
    return line + "."


# -- running the model ------------------------------------------------------------------------------------------
def card_prior(card: dict, source: str, target: str):
    """The model's intensity prior for a direction (the LUT its output corrects), or None for a prior-free model."""
    from medscan.nets.volumes import IntensityLUT

    priors = card.get("priors") or {}
    key = f"{source}->{target}"
    return IntensityLUT.from_json(priors[key]) if key in priors else None


def translate_planes(model, planes: np.ndarray, brain: np.ndarray, source: str, target: str, device,
                     progress: ProgressCallback | None = None, prior=None) -> tuple[np.ndarray, np.ndarray]:
    """TTA mean and spread of the normalised target for normalised canonical 1 mm (N, H, W) ``planes``.

    Planes are padded to the network's multiple (zeros: the background of a skull-stripped slice), predicted in
    chunks, and zeroed outside ``brain``. ``prior`` (an ``IntensityLUT``, see ``card_prior``) is required by a
    model built with a prior input; it is applied pixel by pixel inside the brain, so it flips with the planes.
    """
    import torch

    from medscan.nets.translator import CONTRASTS
    from medscan.ops.generated import tta_planes

    multiple = int(getattr(model, "pad_multiple", 16))
    n, h, w = planes.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    a, t = CONTRASTS.index(source), CONTRASTS.index(target)
    total = n * 4
    done = [0]

    def predict(x: np.ndarray) -> np.ndarray:
        out = np.empty(x.shape, np.float32)
        with torch.inference_mode():
            for start in range(0, len(x), CHUNK):
                planes_np = np.pad(x[start:start + CHUNK], ((0, 0), (0, ph), (0, pw)))
                chunk = torch.from_numpy(planes_np)[:, None].to(device)
                codes = [torch.full((len(chunk),), c, dtype=torch.long, device=device) for c in (a, t)]
                base = None
                if prior is not None:
                    base = torch.from_numpy(prior(planes_np) * (planes_np > 0))[:, None].to(device)
                out[start:start + CHUNK] = model(chunk, *codes, base)[:, 0, :h, :w].float().cpu().numpy()
                done[0] += len(chunk)
                if progress is not None:
                    progress(done[0], total)
        return out

    mean, spread = tta_planes(predict, np.ascontiguousarray(planes, np.float32))
    mean = np.maximum(mean, 0.0) * brain
    return mean.astype(np.float32), (spread * brain).astype(np.float32)


def translate_volume(model, scan: Scan, source: str, target: str, device, grid_mm: float = 1.0,
                     progress: ProgressCallback | None = None, prior=None) -> tuple[np.ndarray, np.ndarray, float]:
    """(output, uncertainty, input scale) on the scan's own grid, in the input's units (see the module note)."""
    from medscan.nets.volumes import axial_flips, brain_scale, canonical_volume, resample_planes

    normalised, brain, scale = brain_scale(canonical_volume(scan.voxels, scan))
    _k, h, w = normalised.shape
    spacing = scan.spacing[:2]
    work = resample_planes(normalised, spacing, grid_mm)
    work_brain = resample_planes(brain.astype(np.float32), spacing, grid_mm) > 0.5
    rows = np.flatnonzero(work_brain.sum(axis=(1, 2)) > 0)
    mean = np.zeros_like(work)
    spread = np.zeros_like(work)
    if rows.size:
        mean[rows], spread[rows] = translate_planes(model, work[rows], work_brain[rows], source, target, device,
                                                    progress, prior)
    if mean.shape[1:] != (h, w):
        mean = resample_planes(mean, (grid_mm, grid_mm), grid_mm, shape=(h, w))
        spread = resample_planes(spread, (grid_mm, grid_mm), grid_mm, shape=(h, w))
    mean, spread = mean * brain, spread * brain
    flip_rows, flip_cols = axial_flips(scan)  # canonical -> the scan's own orientation (a flip is its own inverse)
    if flip_rows:
        mean, spread = mean[:, ::-1], spread[:, ::-1]
    if flip_cols:
        mean, spread = mean[:, :, ::-1], spread[:, :, ::-1]
    return (np.ascontiguousarray(mean) * scale, np.ascontiguousarray(spread) * scale, scale)


def translate(scan: Scan, *, to: str, model: str, device: str, progress: ProgressCallback | None,
              **params: str) -> Result:
    """The ``translate`` operation: predict an MR contrast that was not acquired, or (``to="CT"``) an
    EXPERIMENTAL pseudo-CT.

    Args:
        scan: a skull-stripped axial brain MR series (any for ``to="CT"``, except CT).
        to: the contrast to produce: ``"T1"``, ``"T1c"``, ``"T2"``, ``"FLAIR"`` or ``"CT"``.
        model: the shipped MR translation model.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: called as ``progress(done, total)`` after each slice; raising from it cancels the run.
        params: ``from``, the input's contrast, or ``"auto"`` to read it from SeriesDescription, ProtocolName or
            the file name (``from`` is a Python keyword, hence the catch-all).

    Returns:
        A SYNTHETIC :class:`Result` on the input's grid with the flip-spread uncertainty; zero outside the brain and
        on the input's scale (MR), or HU (pseudo-CT, also marked EXPERIMENTAL).

    Raises:
        MedscanError: a CT input, an unknown or identical source contrast, an untrained direction, or a series that
        is not a skull-stripped axial brain.
    """
    source_param = str(params.get("from", "auto"))
    if to == "CT":
        if scan.modality == "CT" or scan.units == "HU":
            raise MedscanError(scan.where, "the series already is CT (from and to are the same modality)")
        from medscan.ops.pseudo_ct import pseudo_ct

        return pseudo_ct(scan, device=device, progress=progress)
    from medscan.nets.device import pick_device
    from medscan.nets.weights import load_card
    from medscan.ops.generated import synthetic_result
    from medscan.ops.inference import cached_model

    if scan.modality == "CT" or scan.units == "HU":  # before anything else: a CT has no MR contrast to detect
        raise MedscanError(scan.where, f"translate --to {to} is an MR contrast model; this series is CT")
    source, said_by = (source_param, "--from") if source_param != "auto" else detect_contrast(scan)
    card = load_card(model).data
    check_translatable(scan, source, to, card)
    torch_device = pick_device(device)
    network, card = cached_model(model, torch_device)
    output, spread, scale = translate_volume(network, scan, source, to, torch_device,
                                             float(card.get("grid_mm", 1.0)), progress, card_prior(card, source, to))
    verdict = card["evaluation"]["verdicts"][f"{source}->{to}"]  # present: check_translatable refuses otherwise
    held_out = (f"beat the best intensity look-up table in all {len(verdict['folds'])} leave-one-subject-out folds "
                f"(worst {verdict['worst_fold_psnr']['PSNR_dB']:+.2f} dB PSNR, "
                f"{verdict['worst_fold_ssim']['SSIM']:+.3f} SSIM)")
    entry = ProvenanceEntry("translate", {"from": source, "from_source": said_by, "to": to,
                                          "tta": "flips x4", "input_brain_median": round(scale, 4),
                                          "scale": "target contrast with its brain median at the input's",
                                          "held_out": held_out},
                            model=model, model_version=str(card.get("version")), software=f"medscan {__version__}")
    notes = [f"{to} predicted from {source} ({said_by}); intensities on the input's scale (brain median "
             f"{scale:.4g} in both), arbitrary MR units", f"on subjects it never saw, the model {held_out}"]
    result = synthetic_result(scan, output.reshape(scan.voxels.shape), entry,
                              uncertainty=spread.reshape(scan.voxels.shape), notes=notes)
    result.scan.description = f"{to} from {source}" + (f" ({scan.description})" if scan.description else "")
    return result
