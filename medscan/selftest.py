"""``medscan --self-test`` / ``medscan-gui --self-test``: prove an installation works, one line per check.

An installer that bundles Python can drop a data file, a plugin found only through package metadata
(pylibjpeg's decoders), or a native library (SQLCipher, Qt's platform plugins) without any error at
build time; the first user would find out. So the bundle runs the real code paths on the shipped
files: every model card and its weights' hash, the sample CT decoded and denoised, an encrypted
database created, reopened and refused with a wrong passphrase; ``medscan-gui --self-test`` adds the
window rendering the sample (ui.app passes that check in: the engine never imports the window). Exit
status 0 only when no check fails. A build that ships no models still proves the model stack with a
throwaway network, and skips (and says so) only the denoising of the sample.
"""

from __future__ import annotations

import functools
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from medscan.resources import resource_path

if TYPE_CHECKING:
    from medscan.scan import Scan

SAMPLE_CT = ("samples", "ct_abdomen_siemens")
SAMPLE_SHAPE = (20, 512, 512)
# Air near -1024 HU and something denser than soft tissue (bone, contrast) but not garbage.
HU_AIR = (-1100.0, -900.0)
HU_DENSE = (300.0, 4000.0)
PASSPHRASE = "medscan self-test passphrase"
# Windowed builds on Windows have no stdout; the report then goes here.
FALLBACK_LOG = "medscan-selftest.log"


class Skipped(Exception):
    """A check that cannot apply to this build; reported as ``skip``, not as a failure."""


# A throwaway network of the shipped denoiser's kind, small enough to build in a blink.
THROWAWAY_NETWORK = {
    "kind": "residual_denoiser",
    "backbone": {"arch": "UNet", "spatial_dims": 2, "in_channels": 2, "out_channels": 1,
                 "channels": [4, 8], "strides": [2], "num_res_units": 0},
}


def check_models() -> str:
    """Every shipped model card loads, its weights match the card's sha256 and fit its network."""
    from medscan.nets.weights import list_cards, load_model, models_dir

    cards = list_cards()
    if not cards:
        return f"none shipped in {models_dir()}; {_model_stack_round_trip()}"
    for card in cards:
        load_model(card.name)  # MedscanError on a missing file or a hash mismatch
    return f"{len(cards)} verified: " + ", ".join(f"{c.name} ({str(c.data.get('sha256', ''))[:12]})" for c in cards)


def _model_stack_round_trip() -> str:
    """Without shipped models, still prove the frozen torch + MONAI + safetensors stack: save a throwaway
    network with its card, load it back through the hash check, run it once."""
    import torch

    from medscan.nets.builders import build_network
    from medscan.nets.weights import load_model, save_model

    with tempfile.TemporaryDirectory(prefix="medscan-selftest-", ignore_cleanup_errors=True) as tmp:
        save_model(build_network(THROWAWAY_NETWORK), {"network": THROWAWAY_NETWORK}, "throwaway", Path(tmp))
        model, _card = load_model("throwaway", Path(tmp))
        with torch.inference_mode():
            out = model(torch.zeros(1, 1, 32, 32), torch.full((1,), 0.05))
    if tuple(out.shape) != (1, 1, 32, 32):
        raise RuntimeError(f"throwaway network returned shape {tuple(out.shape)}")
    return "torch, MONAI and safetensors checked with a throwaway network"


# Third-party modules medscan imports only inside functions (the feature that needs them loads them): a bundle
# that lost one starts fine and fails when a user reaches the feature. tests/test_installer_spec.py keeps this
# list complete from the source.
LAZY_IMPORTS = (
    "PIL", "alembic", "alembic.config", "captum.attr", "cv2", "highdicom", "highdicom.sr.templates", "isal",
    "jpeg_ls", "keyring", "keyring.backends", "matplotlib", "monai.inferers", "monai.networks", "monai.networks.nets",
    "monai.networks.schedulers", "nibabel", "nibabel.nicom", "numpy", "pydicom", "pydicom.pixels",
    "pydicom.sr.codedict", "pydicom.uid", "pylibjpeg.utils", "pynetdicom", "pynetdicom._config", "pynetdicom.status",
    "safetensors.torch", "scipy", "scipy.interpolate", "scipy.stats", "skimage.filters", "skimage.metrics",
    "skimage.transform", "sqlalchemy", "torch", "torch.nn.functional", "tqdm", "yaml",
)


# The window's libraries (the gui extra): checked where PyQt6 is installed; `pip install medscan` has none.
GUI_IMPORTS = ("PyQt6.QtCore", "PyQt6.QtWidgets")


def gui_installed() -> bool:
    """Whether PyQt6 (``pip install 'medscan[gui]'``) is installed here."""
    import importlib.util

    try:
        return importlib.util.find_spec("PyQt6") is not None
    except (ImportError, ValueError):  # a broken or blocked installation counts as none
        return False


def check_imports() -> str:
    """Every medscan module and every library a feature loads lazily imports in this installation (the window's
    libraries only where PyQt6 is installed)."""
    import importlib
    import pkgutil

    import medscan

    names = [m.name for m in pkgutil.walk_packages(medscan.__path__, "medscan.")
             if not m.name.endswith(("__main__", "migrations.env"))]
    libraries = [*LAZY_IMPORTS, *(GUI_IMPORTS if gui_installed() else ())]
    failed = []
    for name in [*names, *libraries]:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a frozen package can fail in other ways (a missing stub is a ValueError)
            failed.append(f"{name} ({type(exc).__name__}: {exc})")
    if failed:
        raise RuntimeError(f"{len(failed)} modules do not import: {'; '.join(failed[:3])}")
    window = "" if gui_installed() else " (no PyQt6: the window's libraries not checked)"
    return f"{len(names)} medscan modules and {len(libraries)} lazily used libraries{window}"


def check_decoders() -> str:
    """pylibjpeg finds its decoders through package metadata (entry points), which a bundle can lose."""
    from pydicom import uid
    from pylibjpeg.utils import get_pixel_data_decoders

    wanted = {
        "JPEG": uid.JPEGBaseline8Bit, "JPEG lossless": uid.JPEGLosslessSV1, "JPEG-LS": uid.JPEGLSLossless,
        "JPEG 2000": uid.JPEG2000Lossless, "RLE": uid.RLELossless,
    }
    found = get_pixel_data_decoders()
    missing = [name for name, syntax in wanted.items() if syntax not in found]
    if missing:
        raise RuntimeError(f"no pylibjpeg decoder for {', '.join(missing)} (package metadata not bundled?)")
    import jpeg_ls  # noqa: F401  (pyjpegls: pydicom's other JPEG-LS plugin)

    return f"pylibjpeg + pyjpegls: {', '.join(wanted)}"


@functools.cache
def _sample_scan() -> Scan:
    from medscan.io import load

    return load(resource_path(*SAMPLE_CT))


def check_sample() -> str:
    """The bundled CT decodes (JPEG 2000) to the right shape and plausible HU."""
    path = resource_path(*SAMPLE_CT)
    scan = _sample_scan()
    if scan.voxels.shape != SAMPLE_SHAPE:
        raise RuntimeError(f"{path}: shape {scan.voxels.shape}, expected {SAMPLE_SHAPE}")
    low, high = float(scan.voxels.min()), float(scan.voxels.max())
    if not (HU_AIR[0] <= low <= HU_AIR[1] and HU_DENSE[0] <= high <= HU_DENSE[1]):
        raise RuntimeError(f"{path}: HU range {low:.0f}..{high:.0f} is not that of a CT")
    return f"{scan.modality} {'x'.join(map(str, scan.voxels.shape))}, HU {low:.0f}..{high:.0f}"


def check_denoise() -> str:
    """The sample runs through the operation registry (model, torch, MONAI) as the CLI and GUI run it."""
    import numpy as np

    from medscan.nets.weights import list_cards, models_dir
    from medscan.ops import run

    if not list_cards():  # a build without models/ cannot denoise; one with models must
        raise Skipped(f"no models shipped in {models_dir()}")
    scan = _sample_scan()
    result = run("denoise", scan)
    out = result.scan
    if out.voxels.shape != scan.voxels.shape or not np.isfinite(out.voxels).all():
        raise RuntimeError(f"denoise returned shape {out.voxels.shape} or non-finite values")
    if out.units != scan.units or out.provenance[-1].operation != "denoise":
        raise RuntimeError("denoise lost the units or did not record its provenance")
    report = result.fidelity
    guard = f"fidelity flagged: {'; '.join(report.reasons)}" if report.flagged else "fidelity ok"
    return f"{out.provenance[-1].model}: method-noise std {report.method_noise_std:.1f} {out.units}, {guard}"


def check_seg() -> str:
    """A DICOM SEG over the sample is written and read back (highdicom reads the standard's tables from package
    data files, which a bundle can lose while every import still works)."""
    import numpy as np

    from medscan.io.seg_sr import SegmentItem, read_seg, write_annotation_seg

    scan = _sample_scan()
    mask = np.zeros(scan.voxels.shape, bool)
    mask[: scan.voxels.shape[0] // 2] = scan.voxels[: scan.voxels.shape[0] // 2] > 200  # dense tissue, top half
    with tempfile.TemporaryDirectory(prefix="medscan-selftest-", ignore_cleanup_errors=True) as tmp:
        path = Path(tmp) / "selftest_seg.dcm"
        write_annotation_seg(scan, [SegmentItem(mask, "bone", "#1 bone", method="self-test")], path, draft=True)
        labels, segments = read_seg(path, scan)
    if not np.array_equal(labels > 0, mask) or segments[1]["label"] != "#1 bone":
        raise RuntimeError("the SEG read back differs from the mask written")
    return f"SEG of {int(mask.sum())} voxels written and read back (highdicom)"


def check_database() -> str:
    """SQLCipher really encrypts (no plain SQLite header), reopens with the key, refuses a wrong one."""
    from medscan.db.store import SQLITE_MAGIC, Database
    from medscan.scan import MedscanError

    with tempfile.TemporaryDirectory(prefix="medscan-selftest-", ignore_cleanup_errors=True) as tmp:
        path = Path(tmp) / "selftest.db"
        Database.create(path, PASSPHRASE).close()
        if path.read_bytes()[: len(SQLITE_MAGIC)] == SQLITE_MAGIC:
            raise RuntimeError(f"{path}: written as plain SQLite, not encrypted")
        with Database.open(path, PASSPHRASE) as database:
            database.audit("self-test", str(path))
        try:
            Database.open(path, PASSPHRASE + " wrong").close()
        except MedscanError:
            pass
        else:
            raise RuntimeError(f"{path}: opened with a wrong passphrase")
    return "created, reopened and closed; wrong passphrase refused"


def _output() -> tuple[TextIO, Path | None]:
    """stdout, or a log file in the temp folder when there is none (windowed build on Windows)."""
    if sys.stdout is not None:
        return sys.stdout, None
    log = Path(tempfile.gettempdir()) / FALLBACK_LOG
    return open(log, "w", encoding="utf-8"), log


def run_self_test(extra_checks: Sequence[tuple[str, Callable[[], str]]] = ()) -> int:
    """Run every check (then ``extra_checks``, e.g. the window's from ``medscan-gui --self-test``), print one line
    each, return 0 only if none fails (never raises). A check raising ``Skipped`` is reported as skipped."""
    import medscan

    checks: list[tuple[str, Callable[[], str]]] = [
        ("imports", check_imports),
        ("models", check_models),
        ("decoders", check_decoders),
        ("sample", check_sample),
        ("denoise", check_denoise),
        ("seg", check_seg),
        ("database", check_database),
    ]
    checks += extra_checks
    out, log = _output()
    where = f"bundle {resource_path()}" if getattr(sys, "frozen", False) else f"source {resource_path()}"
    print(f"medscan {medscan.__version__} self-test ({where})", file=out, flush=True)
    failed, skipped = [], []
    start = time.perf_counter()
    for name, check in checks:
        began = time.perf_counter()
        try:
            with warnings.catch_warnings():  # library chatter about headers; the check says what matters
                warnings.simplefilter("ignore")
                outcome, detail = "ok  ", check()
        except Skipped as why:
            skipped.append(name)
            outcome, detail = "skip", str(why)
        except Exception as exc:  # a check that fails reports one line and the others still run
            failed.append(name)
            lines = str(exc).strip().splitlines()
            outcome, detail = "FAIL", f"{type(exc).__name__}: {lines[0] if lines else ''}"
        print(f"  {outcome} {name:<9} {detail} [{time.perf_counter() - began:.1f} s]", file=out, flush=True)
    total = f"{len(checks)} checks, {len(skipped)} skipped, {time.perf_counter() - start:.1f} s"
    summary = f"self-test FAILED: {', '.join(failed)} ({total})" if failed else f"self-test passed ({total})"
    print(summary, file=out, flush=True)
    if log is not None:
        out.close()
    return 1 if failed else 0
