"""What every training script in ``scripts/`` does around its loop: the ``--export-checkpoint`` flag, the model
rebuilt from a run folder (``config.json`` + ``checkpoint.pt`` + ``log.csv``), and the shipped model written with
its card and the run's log beside the weights.

A run folder is what :func:`medscan.train.trainer.train` (or a script's own loop built on its
``save_checkpoint`` / ``open_log``) leaves: ``config.json`` (the run's config dataclass as JSON), ``checkpoint.pt``
(a dict of state dicts plus ``step``) and ``log.csv`` (a ``step`` column, usually ``seconds`` and ``loss``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

EXPORT_FLAG = "--export-checkpoint"


def add_export_checkpoint(parser: argparse.ArgumentParser, what: str = "models/<name>") -> None:
    """Add ``--export-checkpoint``: ship ``what`` from the latest checkpoint of the run folder (an unfinished run
    too), with the run's own ``config.json`` rather than this command line's defaults."""
    parser.add_argument(EXPORT_FLAG, action="store_true",
                        help=f"write {what} from the latest checkpoint (of an unfinished run too)")


def add_config_options(parser: argparse.ArgumentParser, defaults: Any, names: tuple[str, ...]) -> None:
    """One option per config field in ``names`` (``lr_pretrain`` -> ``--lr-pretrain``), of the type and with the
    default that field has in ``defaults`` (an instance of the config dataclass); :func:`config_options` reads
    them back."""
    for name in names:
        value = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)


def config_options(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The values of the options :func:`add_config_options` added, by field name (for the config's constructor)."""
    return {name: getattr(args, name) for name in names}


def training_command(argv: list[str] | None = None) -> str:
    """The command line a card records as ``training.command``: ``python`` and ``argv`` (default ``sys.argv``)
    without ``--export-checkpoint``, so it names the training, not the export."""
    return "python " + " ".join(a for a in (sys.argv if argv is None else argv) if a != EXPORT_FLAG)


def load_run_config(workdir: Path, config_class: type) -> Any:
    """The run's config: ``config_class(**config.json)`` of ``workdir``."""
    return config_class(**json.loads((workdir / "config.json").read_text()))


def log_rows(workdir: Path, up_to_step: int | None = None) -> list[dict[str, str]]:
    """The rows of ``workdir/log.csv`` (column name -> text), those at or before ``up_to_step`` when given;
    [] when there is no log."""
    path = workdir / "log.csv"
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r for r in rows if up_to_step is None or int(r["step"]) <= up_to_step]


def last_log_row(workdir: Path, up_to_step: int | None = None) -> dict[str, str]:
    """The last row of :func:`log_rows` ({} when there is none): what a card records as the run's final figures."""
    rows = log_rows(workdir, up_to_step)
    return rows[-1] if rows else {}


def from_checkpoint(workdir: Path, config_class: type, parts: tuple[str, ...] = ("model",),
                    network: str = "network") -> dict[str, Any]:
    """Rebuild the model(s) of a run folder, finished or not, as its own config made them.

    Args:
        workdir: the run folder (``config.json``, ``checkpoint.pt``, ``log.csv``).
        config_class: the dataclass ``config.json`` was written from (its ``network`` attribute, or the one
            named by ``network``, is the card's network entry for :func:`medscan.nets.builders.build_network`).
        parts: the checkpoint entries to load, each into its own network of that config (e.g. ``("model",
            "model_ct2mr")`` for the two generators of a CycleGAN).
        network: the config attribute that holds the network.

    Returns:
        ``config``; one entry per part (the model, in eval mode); ``parameters`` (of the first part); ``steps``
        (the checkpoint's step); ``log`` (the last log row at or before that step, {} without a log);
        ``seconds`` and ``final_loss`` from that row (0.0 and NaN where the log has no such column).
    """
    import torch

    from medscan.nets.builders import build_network, count_parameters

    config = load_run_config(workdir, config_class)
    state = torch.load(workdir / "checkpoint.pt", weights_only=False)
    result: dict[str, Any] = {"config": config}
    for part in parts:
        model = build_network(getattr(config, network))
        model.load_state_dict(state[part])
        result[part] = model.eval()
    step = int(state["step"])
    last = last_log_row(workdir, step)
    result.update(parameters=count_parameters(result[parts[0]]), steps=step, log=last,
                  seconds=float(last.get("seconds") or 0.0), final_loss=float(last.get("loss") or "nan"))
    return result


def ship(model: Any, card: dict[str, Any], name: str, workdir: Path, folder: Path | None = None,
         log_name: str = "log.csv") -> Path:
    """Write ``model`` and its ``card`` as ``<folder>/<name>.safetensors`` / ``.json`` (default folder: the models
    folder, ``MEDSCAN_MODELS`` or ``models/``) and copy the run's log (``workdir/log_name``, when there is one)
    beside them as ``<name>.train_log.csv`` (the docs draw the loss curves from it); the card's path."""
    from medscan.nets.weights import save_model

    path = save_model(model, card, name, folder)
    log = workdir / log_name
    if log.exists():
        (path.parent / f"{name}.train_log.csv").write_text(log.read_text())
    return path
