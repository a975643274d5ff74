"""Shipped weights: ``models/<name>.safetensors`` plus the card ``models/<name>.json``.

The card holds the architecture, the training data, the exact command, the evaluation figures and
the sha256 of the weights; loading refuses weights whose hash does not match the card, so a
corrupted or swapped file can never silently produce images.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medscan.scan import MedscanError


def models_dir() -> Path:
    """The shipped models folder: beside the package in a checkout, inside the bundle when frozen."""
    override = os.environ.get("MEDSCAN_MODELS")
    if override:
        return Path(override)
    from medscan.resources import resource_path

    return resource_path("models")


@dataclass
class ModelCard:
    """A model card as read from ``models/<name>.json``.

    Attributes:
        name: the model's name (the file stem).
        data: the card's content (architecture, training, evaluation, sha256 ...).
        path: the card's path; the weights are beside it.
    """

    name: str
    data: dict[str, Any]
    path: Path

    @property
    def weights_path(self) -> Path:
        """The weights file beside the card: ``<name>.safetensors``."""
        return self.path.with_suffix(".safetensors")

    @property
    def version(self) -> str:
        """The card's version as a string (``"1"`` when the card names none)."""
        return str(self.data.get("version", "1"))


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_cards(folder: Path | None = None) -> list[ModelCard]:
    """Every model card in ``folder`` (default :func:`models_dir`), sorted by name.

    Raises:
        MedscanError: a card is not readable JSON.
    """
    folder = folder or models_dir()
    cards = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise MedscanError(path, f"unreadable model card ({exc})") from None
        cards.append(ModelCard(name=path.stem, data=data, path=path))
    return cards


def load_card(name: str, folder: Path | None = None) -> ModelCard:
    """The card of model ``name`` from ``folder`` (default :func:`models_dir`).

    Raises:
        MedscanError: no such card, or it is not readable JSON.
    """
    path = (folder or models_dir()) / f"{name}.json"
    if not path.exists():
        raise MedscanError(path, f"no model card for model {name!r}")
    try:
        return ModelCard(name=name, data=json.loads(path.read_text()), path=path)
    except (OSError, json.JSONDecodeError) as exc:
        raise MedscanError(path, f"unreadable model card ({exc})") from None


def load_model(name: str, folder: Path | None = None):
    """The network of a shipped model with its verified weights, in eval mode, plus its card."""
    from safetensors.torch import load_file

    from medscan.nets.builders import build_network

    card = load_card(name, folder)
    weights = card.weights_path
    if not weights.exists():
        raise MedscanError(weights, "weights file missing")
    expected = card.data.get("sha256")
    actual = sha256_of(weights)
    if expected != actual:
        raise MedscanError(weights, f"sha256 {actual[:12]}… does not match the model card ({str(expected)[:12]}…)")
    model = build_network(card.data["network"])
    try:
        model.load_state_dict(load_file(str(weights)))
    except Exception as exc:
        first = str(exc).splitlines()[0][:120]
        raise MedscanError(weights, f"weights do not fit the card's network ({first})") from None
    model.eval()
    return model, card


def save_model(model, card: dict[str, Any], name: str, folder: Path | None = None) -> Path:
    """Write weights then the card (with their sha256), each atomically, so a card never names missing weights."""
    from safetensors.torch import save_file

    folder = folder or models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{name}.safetensors"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, weights)
    card = {**card, "sha256": sha256_of(weights), "weights_bytes": weights.stat().st_size}
    card_path = folder / f"{name}.json"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(card, fh, indent=2)
    os.chmod(tmp, 0o644)
    os.replace(tmp, card_path)
    return card_path
