"""The built-in operations, declared by reference: names, families, parameters; no implementation is imported.

Listing these (``medscan --help``, the GUI's panels, a batch spec check) costs only this module. Each ``function``
is a ``"module:function"`` reference that ``medscan.ops.registry.run`` imports on the operation's first run, so the
model stacks (torch, MONAI) load only for a command that runs a model.

Values an implementation also uses (model names, contrast lists) are defined here once and imported there.
"""

from __future__ import annotations

from medscan.ops.registry import Operation, Param, register

DENOISE_MODEL = "denoise_unet2d"
SHARPEN_MODEL = "sharpen_edsr2d"
INPAINT_MODEL = "inpaint_unet2d"
FILL_SLICES_MODEL = "fillslices_flow2d"
MOTION_MODEL = "motion_unet2d"
TRANSLATE_MODEL = "translate_mr2d"
MR_CONTRASTS = ("T1", "T1c", "T2", "FLAIR")
TARGETS = (*MR_CONTRASTS, "CT")

NOISE_MODELS = ("auto", "gaussian", "rician")
STRENGTH = Param("strength", "float", 1.0, "share of the estimated noise to remove (0 keeps the input)", 0.0, 1.5)
NOISE = Param("noise", "choice", "auto",
              "noise model: auto = Rician for MR magnitude data (no negative values, a Rayleigh background), "
              "else Gaussian", choices=NOISE_MODELS)

# -- clean: improve a measured scan -------------------------------------------------------------------------------
register(Operation(
    name="denoise",
    family="clean",
    title="Denoise",
    summary="Remove noise blindly (the noise level is estimated per slice); units and geometry are kept.",
    params=(
        STRENGTH,
        NOISE,
        Param("model", "str", DENOISE_MODEL, "shipped model to use"),
    ),
    function="medscan.ops.clean:denoise",
))
register(Operation(
    name="highlight",
    family="clean",
    title="Highlight",
    summary="Local contrast enhancement (CLAHE) of the displayed window, with a map of what changed.",
    params=(
        Param("strength", "float", 2.0, "CLAHE clip limit: higher gives stronger local contrast", 1.0, 8.0),
        Param("center", "float", 0.0, "window centre (with width 0: the modality's default window)"),
        Param("width", "float", 0.0, "window width; 0 picks CT soft tissue or the MR percentile window", 0.0),
    ),
    function="medscan.ops.clean:highlight",
))
register(Operation(
    name="sharpen",
    family="clean",
    title="Sharpen",
    summary="Undo blur (deblur) slice by slice, blind or given the PSF width; units and geometry are kept.",
    params=(
        Param("strength", "float", 1.0, "share of the restored detail to add (0 keeps the input)", 0.0, 1.5),
        Param("psf_sigma", "float", 0.0, "Gaussian PSF sigma in pixels when known (0: blind)", 0.0, 3.0),
        Param("model", "str", SHARPEN_MODEL, "shipped model to use"),
    ),
    function="medscan.ops.restore:sharpen",
))
register(Operation(
    name="adapt",
    family="clean",
    title="Adapt and denoise",
    summary="Fine-tune the denoiser on this study's own noise (self-supervised, time-bounded), then denoise.",
    params=(
        Param("seconds", "float", 60.0, "time spent learning this study's noise", 5.0, 600.0),
        STRENGTH,
        NOISE,
        Param("model", "str", DENOISE_MODEL, "shipped model to start from"),
    ),
    function="medscan.ops.study_adapt:adapt",
))

# -- generate: create what was not measured (SYNTHETIC) -----------------------------------------------------------
register(Operation(
    name="inpaint",
    family="generate",
    title="Inpaint",
    summary="Fill a missing region (mask, box or found automatically) from its surroundings and the neighbouring "
            "slices; measured voxels are copied unchanged, the output is SYNTHETIC.",
    params=(
        Param("mask", "mask", "", "region to fill: a NIfTI mask or DICOM SEG on this series (or drawn in the GUI)"),
        Param("box", "str", "", "region to fill as z0,y0,x0,z1,y1,x1 voxel indices (slice, row, column; ends "
                                "exclusive)"),
        Param("auto", "bool", False, "find zero-filled or constant regions (blanked slices, truncated field of "
                                     "view) enclosed by measured data"),
        Param("model", "str", INPAINT_MODEL, "shipped model to use"),
    ),
    function="medscan.ops.fill:inpaint",
    synthetic=True,
))
register(Operation(
    name="fill_slices",
    family="generate",
    title="Fill slices",
    summary="Fill missing slices (gaps in the slice positions, blank slices) or named corrupted slices through-"
            "plane on a regular grid; measured slices keep their values and positions, the output is SYNTHETIC. "
            "Where the model's card shows it not beating a cubic spline (thin slices), the spline fills.",
    params=(
        Param("slices", "str", "", "also replace these corrupted slices (comma-separated 0-based indices)"),
        Param("model", "str", FILL_SLICES_MODEL, "shipped model to use"),
    ),
    function="medscan.ops.fill:fill_slices",
    synthetic=True,
))
register(Operation(
    name="motion_correct",
    family="generate",
    title="Motion correct",
    summary="Remove MR motion ghosting and blur along the phase-encoding axis slice by slice; output is SYNTHETIC.",
    params=(
        Param("strength", "float", 1.0, "share of the correction to apply (0 keeps the input)", 0.0, 1.5),
        Param("phase_encoding", "choice", "auto",
              "phase-encoding axis when the header lacks InPlanePhaseEncodingDirection: COL (ghosts run "
              "vertically), ROW (horizontally), auto (estimate from the ghosts outside the body)",
              choices=("auto", "COL", "ROW")),
        Param("model", "str", MOTION_MODEL, "shipped model to use"),
    ),
    function="medscan.ops.motion:motion_correct",
    modalities=("MR",),
    synthetic=True,
))
register(Operation(
    name="super_resolve",
    family="generate",
    title="Super-resolve",
    summary="Refine the grid x2 or x4 in-plane (x4 also by a GAN), or x2 through-plane for thick slices; "
            "the output is SYNTHETIC, with a TTA uncertainty map.",
    params=(
        Param("scale", "choice", "2", "refinement factor (through-plane: 2 only)", choices=("2", "4")),
        Param("axis", "choice", "in-plane", "in-plane (rows and columns) or through-plane (slice direction)",
              choices=("in-plane", "through-plane")),
        Param("gan", "bool", False, "use the GAN model (in-plane x4): sharper texture, lower PSNR, invented detail"),
        Param("model", "str", "auto", "shipped model to use (auto: the one for this scale and axis)"),
    ),
    function="medscan.ops.restore:super_resolve",
    synthetic=True,
))
register(Operation(
    name="translate",
    family="generate",
    title="Translate contrast",
    summary="Predict an MR contrast that was not acquired on a skull-stripped axial brain (only directions that "
            "beat an intensity look-up table on every held-out subject run; MR->CT experimental); the output is "
            "SYNTHETIC.",
    params=(
        Param("to", "choice", "T2", "contrast to produce (CT: EXPERIMENTAL pseudo-CT, not validated — unpaired "
                                    "training, HU not measured; not for dose planning or diagnosis)",
              choices=TARGETS),
        Param("from", "choice", "auto", "contrast of the input (auto: from SeriesDescription, ProtocolName or the "
                                        "file name)", choices=("auto", *MR_CONTRASTS)),
        Param("model", "str", TRANSLATE_MODEL, "shipped MR translation model to use"),
    ),
    function="medscan.ops.translate:translate",
    modalities=("MR",),
    synthetic=True,
    availability="medscan.ops.translate:availability",
))
