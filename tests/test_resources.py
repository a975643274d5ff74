"""The data folder setting: one helper names ../shared/data, and MEDSCAN_DATA overrides it."""

from __future__ import annotations

from pathlib import Path

from medscan.resources import resource_root, shared_data_dir


def test_shared_data_dir_defaults_beside_the_checkout(monkeypatch):
    monkeypatch.delenv("MEDSCAN_DATA", raising=False)
    assert shared_data_dir() == resource_root().parent / "shared" / "data"
    assert shared_data_dir().is_dir(), "the tests read real scans from ../shared/data (or set MEDSCAN_DATA)"


def test_medscan_data_overrides_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSCAN_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.setenv("MEDSCAN_DATA", "~/elsewhere")
    assert shared_data_dir() == Path.home() / "elsewhere"
