"""The one in-memory type for a loaded series, and its geometry helpers.

Geometry convention (stated once, used everywhere):

* ``Scan.voxels`` is float32 in physical units, indexed ``[k, j, i]`` for a volume
  (slice, row, column — the order numpy, SimpleITK and the DICOM pixel data use) or
  ``[t, k, j, i]`` for a 4-D series (time points, echoes or diffusion directions first).
  A Scan made from an int16 array (a DICOM series whose rescale is exact in int16, e.g. CT in HU) keeps
  that array and converts it to float32 the first time ``voxels`` is read; ``exact_integers()`` hands the
  int16 array to a writer that needs no floats (``medscan convert``), at half the memory.
* ``Scan.affine`` is 4x4 and maps the voxel index ``(i, j, k, 1)`` — column, row, slice —
  to DICOM patient coordinates in millimetres, **LPS** (+x to the patient's left,
  +y posterior, +z superior), exactly as ImagePositionPatient/ImageOrientationPatient.
* NIfTI files are RAS; the conversion happens only in ``medscan.io.nifti``.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class MedscanError(Exception):
    """An error a person can act on; ``str()`` is the one line the CLI prints."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class ProvenanceEntry:
    """One operation applied to a scan; enough to reproduce it and to cite it in DICOM."""

    operation: str
    parameters: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    model_version: str | None = None
    software: str = ""
    timestamp: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    )

    def describe(self) -> str:
        """Short text for DerivationDescription and the GUI's history list."""
        text = self.operation
        if self.model:
            text += f" model={self.model}"
            if self.model_version:
                text += f" v{self.model_version}"
        if self.parameters:
            text += " " + " ".join(f"{k}={v}" for k, v in sorted(self.parameters.items()))
        return text


@dataclass(frozen=True)
class SourceRef:
    """Points a slice back at the instance (and frame) it was read from."""

    sop_instance_uid: str
    sop_class_uid: str
    frame: int | None = None  # 1-based frame number inside an enhanced multi-frame object


@dataclass
class Scan:
    """A series in physical units with its geometry, source references and provenance."""

    voxels: np.ndarray
    affine: np.ndarray
    modality: str = "OT"
    series_uid: str = ""
    series_number: int | None = None
    description: str = ""
    source_refs: list[SourceRef] = field(default_factory=list)  # one per plane, volume-major [t][k]
    header: Any = None  # pydicom Dataset with patient/study/equipment modules, no pixel data
    provenance: list[ProvenanceEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    synthetic: bool = False
    units: str = ""  # "HU" for CT; empty where the scanner's scale is arbitrary (MR)
    volume_labels: list[str] = field(default_factory=list)  # one per t for 4-D series
    repetition_time_s: float | None = None
    source_path: str = ""

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if len(self.shape) not in (3, 4):
            raise ValueError(f"voxels must be 3-D or 4-D, got shape {self.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")

    @property
    def where(self) -> str:
        """What a one-line error names for this series: its file or folder, else its description."""
        return self.source_path or self.description or "series"

    # -- voxels: float32 for every reader; int16 kept until then where it holds the values exactly ----------
    def _get_voxels(self) -> np.ndarray:
        integers = self.__dict__.get("_integers")
        if integers is not None:
            self.__dict__["_voxels"] = integers.astype(np.float32)
            self.__dict__["_integers"] = None
        return self.__dict__["_voxels"]

    def _set_voxels(self, value: np.ndarray) -> None:
        if isinstance(value, np.ndarray) and value.dtype == np.int16:
            self.__dict__["_integers"], self.__dict__["_voxels"] = value, None
        else:
            self.__dict__["_integers"], self.__dict__["_voxels"] = None, np.asarray(value, dtype=np.float32)

    def exact_integers(self) -> np.ndarray | None:
        """The int16 voxels this Scan was made from, while nothing has read them as float32 (else None).

        The same values as ``voxels``; a writer uses them to skip the float32 copy. Do not modify them.
        """
        return self.__dict__.get("_integers")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of ``voxels``, read without converting int16 voxels to float32."""
        integers = self.__dict__.get("_integers")
        return tuple((integers if integers is not None else self.__dict__["_voxels"]).shape)

    # -- geometry -------------------------------------------------------------------------
    @property
    def volume_shape(self) -> tuple[int, int, int]:
        """(slices, rows, columns) of one volume."""
        return tuple(int(n) for n in self.shape[-3:])  # type: ignore[return-value]

    @property
    def n_volumes(self) -> int:
        """Number of volumes: 1 for a 3-D series, ``t`` for a 4-D ``[t, k, j, i]`` one."""
        return 1 if len(self.shape) == 3 else int(self.shape[0])

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along (column i, row j, slice k) — NIfTI's x, y, z order."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def direction(self) -> np.ndarray:
        """3x3 unit column vectors of i, j and k in LPS."""
        return self.affine[:3, :3] / np.asarray(self.spacing)

    @property
    def nifti_shape(self) -> tuple[int, ...]:
        """Array shape as written to NIfTI: (x, y, z[, t])."""
        shape = self.shape
        return tuple(int(n) for n in (shape[::-1] if len(shape) == 3 else (*shape[1:][::-1], shape[0])))

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """(N, 3) voxel indices (i, j, k) -> (N, 3) LPS millimetres."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def orientation_codes(self) -> str:
        """Three letters naming where i, j and k point, e.g. 'LPS' for a plain axial stack."""
        return orientation_codes(self.affine)

    # -- derivation -----------------------------------------------------------------------
    def derive(
        self,
        voxels: np.ndarray,
        entry: ProvenanceEntry,
        *,
        affine: np.ndarray | None = None,
        synthetic: bool = False,
    ) -> Scan:
        """A new Scan that keeps this one's identity and geometry and records ``entry``.

        Operations that resample pass the new ``affine``; everything else is carried over so
        that geometry, units and source references can never be separated from the voxels.
        """
        voxels = np.asarray(voxels, dtype=np.float32)
        new_affine = self.affine if affine is None else np.asarray(affine, dtype=np.float64)
        header = self.header
        if header is not None and not np.allclose(new_affine[:3, 2], self.affine[:3, 2]) and "SliceThickness" in header:
            header = copy.deepcopy(header)  # resampled through-plane: the source's slice thickness no longer holds
            del header.SliceThickness
        if affine is None and voxels.shape[-3:] != self.shape[-3:]:  # shape: no float32 copy of int16 voxels
            raise ValueError(
                f"derived voxels {voxels.shape} differ from {self.shape}: pass the new affine"
            )
        return dataclasses.replace(
            self,
            voxels=voxels,
            affine=new_affine,
            provenance=[*self.provenance, entry],
            warnings=list(self.warnings),
            header=header,
            synthetic=self.synthetic or synthetic,
            source_refs=list(self.source_refs) if voxels.shape[:-2] == self.shape[:-2] else [],
        )


# A property, not a plain field: the dataclass __init__, ``dataclasses.replace`` and ``copy`` all go through it.
Scan.voxels = property(Scan._get_voxels, Scan._set_voxels, doc="float32 voxels in physical units (see the module)")


def orientation_codes(affine: np.ndarray) -> str:
    """Nearest anatomical direction (LPS letters) of each voxel axis of an LPS affine."""
    letters = (("R", "L"), ("A", "P"), ("I", "S"))
    codes = []
    for axis in range(3):
        vec = affine[:3, axis]
        dim = int(np.argmax(np.abs(vec)))
        codes.append(letters[dim][1 if vec[dim] > 0 else 0])
    return "".join(codes)


def affine_from_dicom(
    position: np.ndarray, row_cosine: np.ndarray, column_cosine: np.ndarray,
    pixel_spacing: tuple[float, float], slice_vector: np.ndarray,
) -> np.ndarray:
    """Build the LPS affine from DICOM plane geometry.

    ``row_cosine`` is the direction along a row (increasing column index i), ``column_cosine``
    along a column (increasing row index j); PixelSpacing is (row spacing, column spacing),
    i.e. (delta j, delta i). ``slice_vector`` is the step in mm from slice k to k+1.
    """
    affine = np.eye(4)
    affine[:3, 0] = np.asarray(row_cosine, float) * float(pixel_spacing[1])
    affine[:3, 1] = np.asarray(column_cosine, float) * float(pixel_spacing[0])
    affine[:3, 2] = np.asarray(slice_vector, float)
    affine[:3, 3] = np.asarray(position, float)
    return affine
