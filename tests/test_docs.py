"""The docs cannot drift: the generated pages equal what scripts/make_docs.py renders from the registry and the
model cards, a figure changed in a card changes the page, and every relative link in README.md and docs/ resolves."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from medscan.ops import operations

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def make_docs(load_script):
    return load_script("make_docs")


def test_committed_pages_equal_what_the_script_renders(make_docs):
    stale = make_docs.stale_pages(make_docs.render_all())
    assert not stale, ("run python scripts/make_docs.py: these pages differ from the registry and the cards: "
                       + ", ".join(str(p.relative_to(ROOT)) for p in stale))


def test_every_loss_figure_is_drawn_from_the_current_training_log(make_docs):
    """Each model with a training log has its loss-curve figure, drawn from that very log (the figure records the
    log's sha256), and its page shows it."""
    stale = make_docs.stale_figures()
    assert not stale, ("run python scripts/make_docs.py: these loss figures are missing or older than their log: "
                       + ", ".join(str(p.relative_to(ROOT)) for p in stale))
    pages = make_docs.render_all()
    for log in sorted((ROOT / "models").glob("*.train_log.csv")):
        name = log.name.removesuffix(".train_log.csv")
        assert f"]({name}_loss.png)" in pages[ROOT / "docs" / "models" / f"{name}.md"]


def test_a_changed_training_log_makes_its_figure_stale(make_docs, tmp_path, monkeypatch):
    log = ROOT / "models" / "denoise_unet2d.train_log.csv"
    models, docs = tmp_path / "models", tmp_path / "docs"
    (docs / "models").mkdir(parents=True)
    models.mkdir()
    copy = models / log.name
    copy.write_text(log.read_text())
    monkeypatch.setattr(make_docs, "MODELS", models)
    monkeypatch.setattr(make_docs, "DOCS", docs)
    figure = docs / "models" / "denoise_unet2d_loss.png"
    assert make_docs.stale_figures() == [figure]  # not drawn yet
    make_docs.draw_loss("denoise_unet2d", copy, figure)
    assert make_docs.stale_figures() == []
    copy.write_text(log.read_text() + "99999,0.1,1e-05,1.0\n")  # the model was retrained: its log changed
    assert make_docs.stale_figures() == [figure]


def test_every_operation_has_a_page_with_every_parameter(make_docs):
    pages = make_docs.render_all()
    for op in operations():
        page = pages[ROOT / "docs" / "operations" / f"{op.name}.md"]
        assert op.summary in page
        for param in op.params:
            row = next(line for line in page.splitlines() if line.startswith(f"| `--{param.name.replace('_', '-')}`"))
            assert f"`{param.default}`" in row and make_docs.fmt(param.help) in row


def test_a_figure_comes_from_the_card(make_docs, monkeypatch):
    cards = make_docs.load_cards()
    name = "superres_x2"
    table = cards[name]["evaluation"]["tables"]["in-plane x2"]
    before = make_docs.fmt(table["methods"]["ours"]["psnr"]["mean"])
    op = next(o for o in operations() if o.name == "super_resolve")
    assert f"| ours | {before} ±" in make_docs.render_operation(op, cards)
    changed = copy.deepcopy(cards)
    changed[name]["evaluation"]["tables"]["in-plane x2"]["methods"]["ours"]["psnr"]["mean"] = 12.345
    page = make_docs.render_operation(op, changed)
    assert "| ours | 12.35 ±" in page and f"| ours | {before} ±" not in page


def test_relative_links_resolve():
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = target.split("#")[0]
            # a note is included in the generated page of docs/operations or docs/models: links are relative to it
            base = ROOT / "docs" / page.parent.name if "notes" in page.parts else page.parent
            if not (base / path).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_readme_is_for_users():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for phrase in ("bash scripts/demo.sh", "bash scripts/test.sh", "not a medical device", "SYNTHETIC",
                   "fidelity guard", "EXPERIMENTAL"):
        assert phrase in text
    assert not re.search(r"\bissue\b", text, flags=re.I), "the README speaks to users, not to the issue tracker"
