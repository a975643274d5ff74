"""Start-up cost: commands that run no model import no torch, MONAI or Qt; operations are declared by reference.

Each command runs in a fresh interpreter (``sys.modules`` of this test process already holds whatever other tests
imported), and the heavy modules it imported are read back from that interpreter.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

SAMPLE_CT = Path(__file__).resolve().parents[1] / "samples" / "ct_abdomen_siemens"
HEAVY = ("torch", "monai", "PyQt6")

PROBE = """
import contextlib, io, json, sys
heavy = sys.argv.pop(1)
from medscan.cli import main
out = io.StringIO()
code = 0
with contextlib.redirect_stdout(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:  # --help and --version exit through argparse
        code = exc.code
print(json.dumps({"code": code, "stdout": out.getvalue(),
                  "heavy": sorted(m for m in heavy.split(",") if m in sys.modules)}))
"""


def run_cli(*args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, ",".join(HEAVY), *args], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_plain_info_imports_no_torch_monai_or_qt() -> None:
    probe = run_cli("info", str(SAMPLE_CT))
    assert probe["code"] == 0 and "512x512x20" in probe["stdout"]
    assert probe["heavy"] == []


def test_info_and_help_import_no_scipy_or_nibabel_either() -> None:
    """Lighter than the model stack but still a fifth of a second of start-up: loaded where they are used."""
    for args in (("info", str(SAMPLE_CT)), ("--help",), ("annotate", "--help")):
        result = subprocess.run([sys.executable, "-c", PROBE, "scipy,nibabel,sqlalchemy", *args], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.strip().splitlines()[-1])["heavy"] == [], args


@pytest.mark.parametrize("args", [
    ("--version",),
    ("--help",),
    ("clean", "--help"),
    ("generate", "--help"),
    ("annotate", "--help"),
    ("db", "--help"),
    ("deidentify", "--help"),
    ("screen", "--help"),
    ("batch", "--help"),
])
def test_commands_that_run_no_model_import_none_of_the_model_stack(args: tuple[str, ...]) -> None:
    probe = run_cli(*args)
    assert probe["code"] == 0
    assert probe["heavy"] == []


def test_convert_and_png_import_no_model_stack(tmp_path) -> None:
    for args in (("convert", str(SAMPLE_CT), "-o", str(tmp_path / "ct.nii.gz")),
                 ("png", str(SAMPLE_CT), "-o", str(tmp_path / "ct.png"))):
        probe = run_cli(*args)
        assert probe["code"] == 0, probe
        assert probe["heavy"] == []
    assert (tmp_path / "ct.nii.gz").stat().st_size > 0 and (tmp_path / "ct.png").stat().st_size > 0


def test_help_still_lists_every_operation_without_importing_an_implementation() -> None:
    from medscan.ops import operations

    clean, generate = run_cli("clean", "--help"), run_cli("generate", "--help")
    for op in operations():
        listing = clean if op.family == "clean" else generate
        assert op.name.replace("_", "-") in listing["stdout"], op.name
    assert "synthesize" in generate["stdout"]
    denoise = run_cli("clean", "denoise", "--help")
    assert "--strength" in denoise["stdout"] and "--noise" in denoise["stdout"] and denoise["heavy"] == []


def test_every_declaration_names_a_function_taking_exactly_its_parameters() -> None:
    """The catalog is a second place that names parameters: this keeps it in step with the implementations."""
    from medscan.ops import operations

    for op in operations():
        assert isinstance(op.function, str), f"{op.name} is declared by reference, not imported"
        parameters = inspect.signature(op.implementation()).parameters.values()
        keywords = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
        declared = {p.name for p in op.params} | {"device", "progress"}
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):  # e.g. translate's "from"
            assert keywords <= declared, op.name
        else:
            assert keywords == declared, op.name


def test_a_module_registering_its_declared_operation_must_agree_with_the_declaration() -> None:
    import dataclasses

    from medscan.ops import registry

    declared = registry.get("highlight")
    function = declared.implementation()
    concrete = dataclasses.replace(declared, function=function)
    assert registry.register(concrete) is declared  # the module's own registration of the same declaration
    changed = dataclasses.replace(concrete, params=concrete.params[:1])
    with pytest.raises(ValueError, match="differently from its declaration"):
        registry.register(changed)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(dataclasses.replace(declared, function=lambda scan, **kw: None))
    assert registry.get("highlight") is declared
