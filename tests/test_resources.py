"""The data folder setting: one helper names ../shared/data, and MEDSCAN_DATA overrides it."""

from __future__ import annotations

from pathlib import Path

from medscan import resources
from medscan.resources import resource_root, shared_data_dir


def test_shared_data_dir_defaults_beside_the_checkout(monkeypatch):
    monkeypatch.delenv("MEDSCAN_DATA", raising=False)
    assert shared_data_dir() == Path(resources.__file__).resolve().parents[2] / "shared" / "data"
    assert shared_data_dir().is_dir(), "the tests read real scans from ../shared/data (or set MEDSCAN_DATA)"


def test_medscan_data_overrides_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSCAN_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.setenv("MEDSCAN_DATA", "~/elsewhere")
    assert shared_data_dir() == Path.home() / "elsewhere"


def test_a_pip_installed_medscan_finds_its_models_and_samples_under_the_prefix(monkeypatch, tmp_path):
    """Outside a checkout (a wheel installed into site-packages) the shipped files are the wheel's data files."""
    site = tmp_path / "lib" / "site-packages"
    (site / "medscan").mkdir(parents=True)
    monkeypatch.setattr(resources, "_checkout_root", lambda: site)
    monkeypatch.setattr(resources.sys, "prefix", str(tmp_path))
    assert resource_root() == site  # nothing installed under the prefix: the old answer, which the errors name
    (tmp_path / "share" / "medscan" / "models").mkdir(parents=True)
    assert resources.resource_path("models") == tmp_path / "share" / "medscan" / "models"
    monkeypatch.setattr(resources, "_checkout_root", lambda: Path(__file__).resolve().parents[1])
    assert resource_root() == Path(__file__).resolve().parents[1]  # a checkout's own models/ come first
