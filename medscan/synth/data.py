"""The slices the synthesis model learns from: axial slices of whole volumes on a fixed per-class grid.

Why a fixed grid per class: a generated slice must have a physical pixel spacing to be exported, so every
slice of one class is resampled to the same field of view (``CLASSES[...].fov_mm`` over ``GRID`` pixels),
centred on the body, in radiological orientation (rows anterior->posterior, columns right->left, as LPS).

Intensities: CT is mapped through the fixed HU window ``CT_WINDOW`` to [-1, 1] (bone above the window clips);
MR has no absolute unit, so each volume is divided by its 99.5th percentile inside the head/body and written
back as arbitrary units 0..``MR_UNITS``.

The classes are what ``../shared/data`` holds as axial volumes (see ``SYNTH_TRAIN`` / ``SYNTH_HELDOUT``); the
split is by subject. MR brain trains on TCGA du_7294 and the two Ljubljana MS subjects (another centre and scanner)
and holds out TCGA fg_6692. The torso CT classes train on four volume CTs and six of the eight Stony Brook COVID-19
patients (``train-extra/ct05_sbu_covid19``: one axial slice per time point, soft kernels) and hold out the other
two and the Philips chest CT ct04 (``medscan.resources.CT05_HELDOUT_SUBJECTS``: the denoiser holds out the same
patients) — three patients from two centres that share no patient with the training side.
CT head has no held-out subject here (its only patient is needed to train it), so its quality is not measured
against unseen patients.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medscan.io import load
from medscan.resources import CT05_HELDOUT_SUBJECTS, CT05_TRAIN_SUBJECTS, ct05_axial, shared_data_dir

GRID = 128
CT_WINDOW = (-1024.0, 1024.0)  # HU mapped to [-1, 1]; air stays air, bone above +1024 HU clips
MR_UNITS = 1000.0  # generated MR is in arbitrary units 0..1000 (the training volumes' 99.5th percentile = 1000)


@dataclass(frozen=True)
class SliceClass:
    """One modality + body region the model is conditioned on."""

    modality: str
    region: str
    fov_mm: float  # square field of view of the GRID x GRID slice

    @property
    def name(self) -> str:
        """The class as people read it, e.g. ``"CT chest"``."""
        return f"{self.modality} {self.region}"


CLASSES = (
    SliceClass("MR", "brain", 240.0),
    SliceClass("CT", "head", 250.0),
    SliceClass("CT", "chest", 400.0),
    SliceClass("CT", "abdomen", 400.0),
)
NONE_CLASS = len(CLASSES)  # the "unconditional" label (classifier-free guidance style)

def subject_of(item: str) -> str:
    """The patient an item (or a slice's source) belongs to: the paired or labelled folder, else the file name's
    first part (the Stony Brook ID, or ``ct03`` for both reconstructions of one head)."""
    path = Path(item)
    return str(path.parent) if item.startswith(("paired/", "labelled/")) else path.name.split("_", 1)[0]


# item -> class name, or "torso" for CT volumes whose slices are labelled chest/abdomen by their lung content.
SYNTH_TRAIN = {
    "paired/brain_tcga_du_7294/t1.nii.gz": "MR brain",
    "paired/brain_tcga_du_7294/t1c.nii.gz": "MR brain",
    "paired/brain_tcga_du_7294/t2.nii.gz": "MR brain",
    "paired/brain_tcga_du_7294/flair.nii.gz": "MR brain",
    **{f"paired/brain_ms_patient{n}/{contrast}.nii.gz": "MR brain"
       for n in ("07", "19") for contrast in ("t1", "t1c", "t2", "flair")},
    "train-extra/ct03_head_ge_4mm_detilted.nii.gz": "CT head",
    "train-extra/ct03_head_ge_7mm_detilted.nii.gz": "CT head",
    "train/ct01_upper_abdomen_siemens.nii.gz": "torso",
    "train/ct02_abdomen_pelvis_3mm.nii.gz": "torso",
    "labelled/ct_abdomen_totalseg_example/ct.nii.gz": "torso",
    "labelled/ct_aorta_totalseg_example/ct.nii.gz": "torso",
    **dict.fromkeys(ct05_axial(CT05_TRAIN_SUBJECTS), "torso"),
}
SYNTH_HELDOUT = {
    "paired/brain_tcga_fg_6692/t1.nii.gz": "MR brain",
    "paired/brain_tcga_fg_6692/t1c.nii.gz": "MR brain",
    "paired/brain_tcga_fg_6692/t2.nii.gz": "MR brain",
    "paired/brain_tcga_fg_6692/flair.nii.gz": "MR brain",
    "train-extra/ct04_chest_philips_5mm_kernelB.nii.gz": "CT chest",
    **dict.fromkeys(ct05_axial(CT05_HELDOUT_SUBJECTS), "torso"),
}
# Lesion masks on the same grid as the paired brain volumes: automatic tumour segmentations (TCGA) and the
# expert consensus of MS lesions (Ljubljana).
LESION_MASKS = {
    "paired/brain_tcga_du_7294": "paired/brain_tcga_du_7294/tumour_seg_auto.nii.gz",
    "paired/brain_tcga_fg_6692": "paired/brain_tcga_fg_6692/tumour_seg_auto.nii.gz",
    "paired/brain_ms_patient07": "paired/brain_ms_patient07/lesions_consensus.nii.gz",
    "paired/brain_ms_patient19": "paired/brain_ms_patient19/lesions_consensus.nii.gz",
}


def class_index(modality: str, region: str) -> int:
    """The class of a modality + region, or -1 when the model never saw it."""
    for index, cls in enumerate(CLASSES):
        if cls.modality.upper() == modality.upper() and cls.region.lower() == region.lower():
            return index
    return -1


def pixel_spacing(label: int) -> float:
    """In-plane pixel size in mm of a generated slice of class ``label`` (its field of view over ``GRID``)."""
    return CLASSES[label].fov_mm / GRID


def to_unit(values: np.ndarray, modality: str, mr_scale: float = 1.0) -> np.ndarray:
    """Physical values -> the model's [-1, 1]."""
    if modality == "CT":
        lo, hi = CT_WINDOW
        return np.clip((values - lo) / (hi - lo), 0, 1) * 2 - 1
    return np.clip(values / mr_scale, 0, 1) * 2 - 1


def from_unit(x: np.ndarray, modality: str) -> np.ndarray:
    """The model's [-1, 1] -> HU (CT, through ``CT_WINDOW``) or arbitrary units 0..MR_UNITS (MR)."""
    x = np.clip(np.asarray(x, np.float32), -1, 1)
    if modality == "CT":
        lo, hi = CT_WINDOW
        return ((x + 1) / 2 * (hi - lo) + lo).astype(np.float32)
    return ((x + 1) / 2 * MR_UNITS).astype(np.float32)


def _resample_slice(image: np.ndarray, spacing: tuple[float, float], centre: tuple[float, float], fov: float,
                    fill: float, order: int = 1) -> np.ndarray:
    """``image`` (rows, cols) at ``spacing`` mm -> GRID x GRID over ``fov`` mm centred on ``centre`` (row, col)."""
    from scipy import ndimage

    out_spacing = fov / GRID
    if order:
        sigma = [max(0.0, 0.4 * (out_spacing / s - 1)) for s in spacing]  # anti-alias before shrinking
        if max(sigma) > 0:
            image = ndimage.gaussian_filter(image, sigma)
    offsets = (np.arange(GRID) - (GRID - 1) / 2) * out_spacing
    rows = centre[0] + offsets / spacing[0]
    cols = centre[1] + offsets / spacing[1]
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return ndimage.map_coordinates(image, [rr, cc], order=order, mode="constant", cval=fill).astype(np.float32)


@dataclass
class SynthSlices:
    """Slices in the model's units with their labels: images (N, G, G) in [-1, 1], masks (N, G, G) uint8."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    sources: list[str]
    positions: np.ndarray  # slice index in the source volume

    def save(self, path: Path) -> None:
        """Write the slices to a compressed ``.npz`` (images as float16) at ``path``."""
        np.savez_compressed(path, images=self.images.astype(np.float16), labels=self.labels, masks=self.masks,
                            sources=np.array(self.sources), positions=self.positions)

    @classmethod
    def load(cls, path: Path) -> SynthSlices:
        """Read slices written by :meth:`save`; images come back as float32."""
        data = np.load(path)
        return cls(images=data["images"].astype(np.float32), labels=data["labels"], masks=data["masks"],
                   sources=[str(s) for s in data["sources"]], positions=data["positions"])


# Raise when ``extract_slices`` changes what it makes of an item, so that no cache made before is read.
EXTRACTION_VERSION = 2


def items_key(items: dict[str, str]) -> str:
    """A short hash of ``items``, their classes and ``EXTRACTION_VERSION``: names a cache so that a changed split
    or extraction never reads a stale one."""
    import hashlib
    import json

    text = json.dumps([EXTRACTION_VERSION, sorted(items.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cached_slices(items: dict[str, str], cache_dir: Path, name: str) -> SynthSlices:
    """:func:`extract_slices` of ``items``, kept in ``cache_dir/<name>-<items_key(items)>.npz``."""
    path = Path(cache_dir) / f"{name}-{items_key(items)}.npz"
    if path.exists():
        return SynthSlices.load(path)
    slices = extract_slices(items)
    path.parent.mkdir(parents=True, exist_ok=True)
    slices.save(path)
    return slices


def _axial_volume(item: str, root: Path) -> tuple[np.ndarray, np.ndarray, str, tuple[float, float]]:
    """Voxels (k, rows, cols) flipped so that rows run anterior->posterior and columns right->left."""
    scan = load(root / item)
    volume = np.asarray(scan.voxels if scan.voxels.ndim == 3 else scan.voxels[0], np.float32)
    affine = scan.affine
    if affine[0, 0] < 0:
        volume = volume[:, :, ::-1]
    if affine[1, 1] < 0:
        volume = volume[:, ::-1, :]
    spacing = (float(np.linalg.norm(affine[:3, 1])), float(np.linalg.norm(affine[:3, 0])))
    return volume, affine, scan.modality, spacing


def extract_slices(items: dict[str, str], root: Path | None = None, stride: int = 1) -> SynthSlices:
    """Every ``stride``-th axial slice of ``items`` with enough body in it, on its class grid.

    Torso CT slices are labelled chest when aerated lung fills over 5 % of the body (and lung), else abdomen.
    """
    from scipy import ndimage

    root = shared_data_dir() if root is None else root  # $MEDSCAN_DATA, default ../shared/data
    names = [c.name for c in CLASSES]
    images, labels, masks, sources, positions = [], [], [], [], []
    for item, kind in items.items():
        volume, _, _, spacing = _axial_volume(item, root)
        modality = "MR" if kind.startswith("MR") else "CT"  # the split says what each item is; no guessing
        lesion = None
        folder = str(Path(item).parent)
        if folder in LESION_MASKS and (root / LESION_MASKS[folder]).exists():
            lesion, _, _, _ = _axial_volume(LESION_MASKS[folder], root)
        if modality == "CT":
            # below -1024 HU is outside the reconstruction circle (GE writes -3024): air, not a darker tissue
            volume = np.maximum(volume, -1024.0)
            body3d = volume > -500
            scale = 1.0
        else:
            positive = volume[volume > 0]
            scale = float(np.percentile(positive, 99.5)) if positive.size else 1.0
            body3d = volume > 0.05 * scale
        for k in range(0, volume.shape[0], stride):
            body = ndimage.binary_fill_holes(ndimage.binary_opening(body3d[k], iterations=2))
            if body.sum() * spacing[0] * spacing[1] < 3000:  # under 30 cm^2 of tissue: an end slice
                continue
            if kind == "torso":
                # aerated lung (-950..-500 HU; outside air is below), also where a tight crop cuts the lungs open
                lungs = ndimage.binary_opening((volume[k] < -500) & (volume[k] > -950), iterations=2)
                kind_k = "CT chest" if lungs.sum() > 0.05 * (body | lungs).sum() else "CT abdomen"
            else:
                kind_k = kind
            label = names.index(kind_k)
            rows, cols = np.nonzero(body)
            centre = ((rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2)
            fill = -1024.0 if modality == "CT" else 0.0
            image = _resample_slice(volume[k], spacing, centre, CLASSES[label].fov_mm, fill)
            images.append(to_unit(image, modality, scale))
            if lesion is not None:
                grid = _resample_slice((lesion[k] > 0).astype(np.float32), spacing, centre, CLASSES[label].fov_mm,
                                       0.0, order=0)
                masks.append((grid > 0.5).astype(np.uint8))
            else:
                masks.append(np.zeros((GRID, GRID), np.uint8))
            labels.append(label)
            sources.append(item)
            positions.append(k)
    return SynthSlices(images=np.stack(images).astype(np.float32), labels=np.array(labels, np.int64),
                       masks=np.stack(masks), sources=sources, positions=np.array(positions, np.int64))
