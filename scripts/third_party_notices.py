"""Write THIRD_PARTY_NOTICES.md: every distribution that `pip install "medscan[gui,cluster]"` brings in (what the
installer bundles), with the licence its own package metadata declares.

    python scripts/third_party_notices.py            # rewrite THIRD_PARTY_NOTICES.md from this environment
    python scripts/third_party_notices.py --check    # exit 1 when a runtime dependency is missing from the file

The requirements come from pyproject.toml (with the gui and cluster extras), followed through each installed
distribution's own requirements; the licences from the installed metadata (License-Expression, else a short
License field, else the trove classifiers). Run it in the environment the installer is built from.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
NOTICES = ROOT / "THIRD_PARTY_NOTICES.md"
EXTRAS = ("gui", "cluster")

# Native libraries inside the wheels above, whose licences their wheels' metadata do not name on their own.
EMBEDDED = [
    ("CPython", "the Python interpreter (installer bundle only)", "PSF-2.0"),
    ("Qt 6", "inside PyQt6-Qt6: the window's toolkit", "LGPL-3.0-only"),
    ("libjpeg (Thomas Richter)", "inside pylibjpeg-libjpeg: JPEG and JPEG-LS decoding", "GPL-3.0-only"),
    ("OpenJPEG", "inside pylibjpeg-openjpeg: JPEG 2000 decoding", "BSD-2-Clause"),
    ("CharLS", "inside pyjpegls: JPEG-LS decoding", "BSD-3-Clause"),
    ("SQLCipher / SQLite", "inside sqlcipher3-binary or linked by sqlcipher3: the encrypted database", "BSD-3-Clause"),
    ("OpenCV", "inside opencv-python-headless", "Apache-2.0"),
    ("libpq", "inside psycopg-binary: PostgreSQL client", "PostgreSQL"),
    ("ISA-L (Intel)", "inside isal: the gzip compression of .nii.gz", "BSD-3-Clause"),
]

HEADER = """# Third-party notices

medscan is free software: you can redistribute it and/or modify it under the terms of the GNU General Public
License as published by the Free Software Foundation, either version 3 of the License, or (at your option) any
later version (GPL-3.0-or-later; the full text is in `LICENSE`). It is distributed in the hope that it will be
useful, but WITHOUT ANY WARRANTY; without even the implied warranty of MERCHANTABILITY or FITNESS FOR A PARTICULAR
PURPOSE. medscan is research software, not a medical device: its results, SYNTHETIC images above all, do not
replace the acquisition or a qualified professional's judgement.

medscan is GPL-3.0-or-later because the window links PyQt6 (GPL-3.0) and the DICOM decoders include
pylibjpeg-libjpeg (GPL-3.0). The components below keep their own licences; each one's full licence text is
installed with it, in its package metadata folder (`<name>-<version>.dist-info/`, under `_internal/` in the
installed bundle). The sample studies in `samples/` are Apache-2.0 and BSD-2-Clause; their sources and notices
are in `samples/ATTRIBUTION.md`.

This file is written by `python scripts/third_party_notices.py` from the installed packages' own metadata.
"""


def top_requirements() -> list[Requirement]:
    """medscan's runtime requirements with the gui and cluster extras (what the installer bundles)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    for extra in EXTRAS:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


def closure() -> dict[str, metadata.Distribution]:
    """Every installed distribution those requirements reach, by canonical name (markers evaluated here)."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, str]] = set()  # (distribution, extra) already followed
    pending: list[tuple[Requirement, str]] = [(req, "") for req in top_requirements()]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({**default_environment(),
                                                                               "extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        wanted = {(name, e) for e in ("", *requirement.extras)} - seen
        if not wanted:
            continue
        seen |= wanted
        try:
            dist = found.get(name) or metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"third_party_notices: {requirement.name} is not installed here; "
                             "run in the environment the installer is built from") from None
        found[name] = dist
        for line in dist.requires or ():
            pending += [(Requirement(line), e) for _, e in wanted]
    return found


# Distributions whose metadata names no licence: what their installed licence file is.
LICENCE_FILES = {"sqlcipher3": "Zlib (the pysqlite licence in its LICENSE file)"}


def licence_of(dist: metadata.Distribution) -> str:
    """The licence the distribution's metadata declares, as briefly as it says it."""
    meta = dist.metadata
    if canonicalize_name(meta["Name"]) in LICENCE_FILES:
        return LICENCE_FILES[canonicalize_name(meta["Name"])]
    expression = meta.get("License-Expression")
    if expression:
        return expression.strip()
    text = (meta.get("License") or "").strip()
    if text and len(text) <= 60 and "\n" not in text:
        return text
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or () if c.startswith("License ::")]
    if classifiers:
        return "; ".join(classifiers)
    first = text.splitlines()[0].strip() if text else ""
    return first[:60] or "see the licence file in its metadata folder"


def render() -> str:
    rows = []
    for name, dist in sorted(closure().items()):
        if name == "medscan":
            continue
        licence = re.sub(r"\s+", " ", licence_of(dist)).replace("|", "/")
        rows.append(f"| {dist.metadata['Name']} | {licence} |")
    embedded = [f"| {name} | {what} | {licence} |" for name, what, licence in EMBEDDED]
    return "\n".join([
        HEADER,
        "## Python packages",
        "",
        "| package | licence (from its metadata) |",
        "|---|---|",
        *rows,
        "",
        "## Libraries inside those packages",
        "",
        "| library | where | licence |",
        "|---|---|---|",
        *embedded,
        "",
    ])


def listed_names(text: str) -> set[str]:
    """Canonical names of the packages in the file's Python-package table."""
    section = text.split("## Python packages", 1)[-1].split("\n## ", 1)[0]
    return {canonicalize_name(line.split("|")[1].strip()) for line in section.splitlines()
            if line.startswith("| ") and not line.startswith(("| package", "|---"))}


def missing_from(text: str) -> list[str]:
    """Runtime dependencies installed here that the notices do not list."""
    return sorted(set(closure()) - {"medscan"} - listed_names(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that every dependency is listed")
    args = parser.parse_args(argv)
    if args.check:
        missing = missing_from(NOTICES.read_text(encoding="utf-8")) if NOTICES.exists() else ["(no file)"]
        if missing:
            print(f"third_party_notices: {NOTICES.name} lacks {', '.join(missing)}; "
                  "run python scripts/third_party_notices.py", file=sys.stderr)
            return 1
        return 0
    NOTICES.write_text(render(), encoding="utf-8")
    print(f"wrote {NOTICES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
