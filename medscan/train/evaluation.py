"""What every held-out evaluation script in ``scripts/`` shares: its common options, the loop that loads each
shipped model (its hash checked), evaluates it and records how, where and how long it ran, and the writing of the
figures into the model card (``evaluation``) without touching the weights.

Training-side code (it scores on the held-out split of :mod:`medscan.train.data`): inference never imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medscan.train.data import TRAIN_ITEMS


def write_card_figures(model: str, tables: dict[str, Any], meta: dict[str, Any], folder: Path | None = None) -> Path:
    """Put the figures into the model card (in ``folder``, default models/; fold weights live in models/folds);
    only the card changes, so the weights' sha256 still holds. Evaluations another script nested in the card
    (a dict with its own ``script``, e.g. ``by_spacing``) are kept."""
    from medscan.nets.weights import load_card

    card = load_card(model, folder)
    data = dict(card.data)
    nested = {k: v for k, v in (data.get("evaluation") or {}).items() if isinstance(v, dict) and "script" in v}
    data["evaluation"] = {**meta, "tables": tables, **nested}
    _write_card(card.path, data)
    return card.path


def edit_card(name: str, edit: Callable[[dict[str, Any]], None], what: str | None = "evaluation",
              folder: Path | None = None) -> Path | None:
    """Let ``edit`` change the card of model ``name`` in place (``folder``, default the models folder) and write it
    back atomically: only the card changes, so the weights' sha256 still holds. Says in one line that ``what`` was
    written (nothing when ``what`` is None) or that there is no card (then returns None); the card's path."""
    from medscan.nets.weights import models_dir

    path = (folder or models_dir()) / f"{name}.json"
    if not path.exists():
        print(f"(no card {path.name}; skipped)")
        return None
    card = json.loads(path.read_text())
    edit(card)
    _write_card(path, card)
    if what is not None:
        print(f"wrote {what} into {path.name}")
    return path


def _write_card(path: Path, card: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2))
    os.replace(tmp, path)


def heldout_parser(description: str | None, slices: int, quick: str) -> argparse.ArgumentParser:
    """The options every held-out evaluation script takes: slices per item, a smoke run, JSON and card output."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=slices, help="slices per held-out item")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {quick}")
    parser.add_argument("--json", type=Path, help="write every figure (and per-slice values) here")
    parser.add_argument("--cards", action="store_true", help="record the figures in the model card(s)")
    return parser


def run_tasks(script: str, argv: list[str] | None, args: argparse.Namespace, items: tuple[str, ...], per_item: int,
              models: dict[str, str], evaluate: Callable[[str, Any], tuple[list[dict], dict[str, Any]]],
              aggregate: Callable[[str, list[dict]], dict], print_tables: Callable[[str, dict], None],
              train_hint: str = "python scripts/train_restore.py {task}") -> int:
    """The loop every held-out evaluation script shares: per task load the shipped model (its hash checked),
    evaluate, print the tables, record how, where and how long it ran; ``--json`` and ``--cards`` write them.

    ``evaluate(task, model)`` gives the per-slice records and extra card entries, ``aggregate(task, records)`` the
    tables, ``print_tables(task, tables)`` shows them; a model that does not load returns 2 with ``train_hint``
    (``{task}`` filled in). 0 otherwise."""
    import torch

    from medscan.nets.weights import load_model
    from medscan.scan import MedscanError

    torch.set_num_threads(1)
    assert not set(items) & set(TRAIN_ITEMS), "held-out items overlap the training items"
    payload: dict[str, Any] = {"items": list(items), "slices_per_item": per_item, "quick": args.quick, "tasks": {}}
    for task in args.tasks:
        try:
            model, card = load_model(models[task])
        except MedscanError as exc:
            print(f"{exc} (train it: {train_hint.format(task=task)})", file=sys.stderr)
            return 2
        started, load_start = time.perf_counter(), os.getloadavg()[0]
        print(f"\n## {task}: model {card.name} v{card.version} sha256 {card.data['sha256'][:12]}", flush=True)
        records, extra = evaluate(task, model)
        tables = aggregate(task, records)
        print_tables(task, tables)
        meta = {"script": f"python scripts/{script} " + " ".join(argv or sys.argv[1:]), "items": list(items),
                "slices_per_item": per_item, "threads": 1, **extra, "seconds": round(time.perf_counter() - started),
                "load_average_start": load_start, "cpu": platform.processor() or platform.machine(),
                "torch": torch.__version__}
        payload["tasks"][task] = {**meta, "model": card.name, "sha256": card.data["sha256"], "tables": tables,
                                  "per_slice": records}
        if args.cards and not args.quick:
            print(f"figures written to {write_card_figures(models[task], tables, meta)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2, default=float))
        print(f"wrote {args.json}")
    return 0


def print_method_table(table: dict[str, Any], methods: tuple[str, ...] | list[str], labels: dict[str, str],
                       untimed: tuple[str, ...] = ("input",)) -> None:
    """Print one condition's table as Markdown: per method (named by ``labels``) PSNR and SSIM over the whole slice
    and the body, mean ± sd, and seconds per slice (wall, CPU; a dash for the methods in ``untimed``)."""
    from medscan.train.metrics import pm

    print("| method | PSNR dB | PSNR body dB | SSIM | SSIM body | s/slice wall | s/slice CPU |")
    print("|---|---|---|---|---|---|---|")
    for method in methods:
        m = table["methods"][method]
        timing = ("—", "—") if method in untimed else (pm(m["wall_s"], 3), pm(m["cpu_s"], 3))
        print(f"| {labels[method]} | {pm(m['psnr'], 2)} | {pm(m['psnr_body'], 2)} | {pm(m['ssim'], 4)} | "
              f"{pm(m['ssim_body'], 4)} | {timing[0]} | {timing[1]} |")
