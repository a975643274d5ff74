"""A finding's explanation map kept in the study database as an overlay of its annotation (migration 0004):
stored encrypted, read back equal, replaced per slice, gone with its annotation; a database made at 0003 keeps
its rows when medscan migrates it; the CLI keeps the map with ``annotate --db --explain`` and ``explain --db``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from test_annotate import ct  # noqa: F401 - fixture: the sample CT's first 8 slices, HU task and findings

from medscan.db import annotations as review
from medscan.db.models import Annotation, Overlay, Result
from medscan.db.store import Database
from medscan.scan import MedscanError

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CT = ROOT / "samples" / "ct_abdomen_siemens"
KEY = "explanation test key"


def _database(path: Path | str, blob_dir: str | None = None) -> Database:
    database = Database.create(path, KEY, blob_dir=blob_dir, scrypt_n=2**12)
    database.add_user("rad", "radiologist", "rad-pass")
    database.add_user("res", "researcher", "res-pass")
    database.login("rad", "rad-pass")
    return database


def test_an_explanation_is_stored_encrypted_and_reloads_equal(tmp_path, ct) -> None:  # noqa: F811 - the imported fixture
    scan, seg, findings = ct
    database = _database(tmp_path / "studies.db")
    series_id = database.import_folder(SAMPLE_CT)[0]
    ids = review.add_drafts(database, series_id, seg, findings, task="hu")
    finding, annotation_id = findings[0], ids[0]
    k = finding.diameter_slice
    rng = np.random.default_rng(0)
    heat = rng.random(scan.voxels.shape[1:]).astype(np.float32)
    heat[0, 0], heat[0, 1] = 0.0, 1.0
    overlay_id = review.store_explanation(database, annotation_id, k, heat, "occlusion sensitivity over hu")
    kept = review.load_explanations(database, annotation_id)
    assert [(e.id, e.k, e.method) for e in kept] == [(overlay_id, k, "occlusion sensitivity over hu")]
    assert kept[0].heat.dtype == np.float32 and np.array_equal(kept[0].heat, heat)
    assert kept[0].details["by"] == "rad" and review.load_explanations(database, ids[1]) == []
    with database.transaction() as session:
        row = session.get(Overlay, overlay_id)
        assert (row.annotation_ref, row.result_ref, row.kind, row.slices) == (annotation_id, None, "explanation", [k])
        blob_id = row.blob_id
    raw = next(p for p in Path(str(tmp_path / "studies.db") + ".blobs").rglob("*") if blob_id in p.name)
    assert heat.tobytes()[:64] not in raw.read_bytes()  # encrypted like every other blob

    # the same slice again replaces it; another slice adds one
    review.store_explanation(database, annotation_id, k, 1.0 - heat, "occlusion sensitivity over hu")
    if finding.slice_range[0] < k:
        review.store_explanation(database, annotation_id, k - 1, heat * 0.5, "occlusion sensitivity over hu")
    kept = review.load_explanations(database, annotation_id)
    assert np.array_equal(next(e for e in kept if e.k == k).heat, 1.0 - heat)
    assert len(kept) == (2 if finding.slice_range[0] < k else 1)
    assert blob_id not in database.referenced_blobs()  # the replaced map's blob (content-addressed) is an orphan

    # refused in one line: values outside [0, 1], a slice outside the finding, a researcher
    with pytest.raises(MedscanError, match="values in"):
        review.store_explanation(database, annotation_id, k, heat * 2, "x")
    with pytest.raises(MedscanError, match="outside the finding"):
        review.store_explanation(database, annotation_id, finding.slice_range[1] + 1, heat, "x")
    database.login("res", "res-pass")
    with pytest.raises(MedscanError):
        review.store_explanation(database, annotation_id, k, heat, "x")

    # an overlay has exactly one owner, and goes with its annotation
    with pytest.raises(Exception, match=r"ck_overlays_one_owner|CHECK constraint"), database.transaction() as session:
        session.add(Overlay(kind="explanation", slices=[k], blob_id="x"))
    with database.transaction() as session:
        session.delete(session.get(Annotation, annotation_id))
    with database.transaction() as session:
        assert session.scalars(select(Overlay).where(Overlay.annotation_ref == annotation_id)).all() == []
    database.close()


def test_a_0003_database_keeps_its_rows_when_migrated_to_0004(target) -> None:
    """Made by the previous medscan (schema 0003, with a result overlay and an annotation), opened by this one,
    on SQLite and on PostgreSQL (whose DDL for the new foreign key and check constraint differs)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import inspect, text

    from medscan.db import store

    path, blob_dir = target
    database = _database(path, blob_dir)  # creates at head, then we step the schema back to 0003 with Alembic itself
    series_id = database.import_folder(SAMPLE_CT)[0]
    result_id = database.store_result(series_id, np.ones((2, 3, 4), np.float32), operation="clean",
                                      affine=np.eye(4), overlays={"uncertainty": np.full((2, 3, 4), 0.5, np.float32)})
    with database.transaction() as session:
        session.add(Annotation(series_ref=series_id, kind="mask", label="bone", geometry={"box": [[0, 1]]},
                               source="ai", status="draft"))
    config = Config()
    config.set_main_option("script_location", str(store.MIGRATIONS))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0003")
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
        assert "annotation_ref" not in {c["name"] for c in inspect(connection).get_columns("overlays")}
    database.close()

    reopened = Database.open(path, KEY, blob_dir=blob_dir)  # migrates to head
    reopened.login("rad", "rad-pass")
    with reopened.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0004"
    assert np.array_equal(reopened.load_overlays(result_id)["uncertainty"], np.full((2, 3, 4), 0.5, np.float32))
    with reopened.transaction() as session:
        assert session.get(Result, result_id).operation == "clean"
        annotation = session.scalars(select(Annotation)).one()
        assert (annotation.label, annotation.status) == ("bone", "draft")
        annotation_id = annotation.id
        overlay = session.scalars(select(Overlay)).one()
        assert (overlay.result_ref, overlay.annotation_ref, overlay.details) == (result_id, None, {})
    review.store_explanation(reopened, annotation_id, 0, np.zeros((3, 4), np.float32), "test")
    assert review.load_explanations(reopened, annotation_id)[0].heat.shape == (3, 4)
    reopened.close()


def test_cli_keeps_the_explanation_with_the_annotation(tmp_path, monkeypatch, capsys) -> None:
    from medscan.cli import main

    db = tmp_path / "cli.db"
    _database(db).close()
    monkeypatch.setenv("MEDSCAN_DB_KEY", KEY)
    monkeypatch.setenv("MEDSCAN_USER", "rad")
    monkeypatch.setenv("MEDSCAN_USER_KEY", "rad-pass")
    assert main(["annotate", str(SAMPLE_CT), "-o", str(tmp_path / "x.dcm"), "--task", "hu", "--explain"]) == 1
    assert "give --db" in capsys.readouterr().err and not (tmp_path / "x.dcm").exists()
    assert main(["annotate", str(SAMPLE_CT), "-o", str(tmp_path / "seg.dcm"), "--task", "hu", "--min-volume", "5",
                 "--max-per-label", "1", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    number = next(int(line.split()[0][1:]) for line in out.splitlines() if " bone: " in line)
    # a finding as medscan annotate numbers it: its kept annotation (same task, label and box) gets the map
    assert main(["explain", str(SAMPLE_CT), "--task", "hu", "--finding", str(number), "--min-volume", "5",
                 "--max-per-label", "1", "-o", str(tmp_path / "bone.png"), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert f"kept with annotation {number} in" in out and "occlusion sensitivity over hu" in out
    assert main(["explain", str(SAMPLE_CT), "--annotation", str(number), "-o", str(tmp_path / "x.png")]) == 1
    assert "give --db" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
    with Database.open(db, KEY) as database:
        view = next(v for v in review.list_annotations(database, 1) if v.id == number)
        kept = review.load_explanations(database, number)
    assert [(e.k, e.method) for e in kept] == [(view.measurements["diameter_slice"], "occlusion sensitivity over hu")]
    assert kept[0].heat.shape == (512, 512) and kept[0].heat.min() >= 0.0 and kept[0].heat.max() == 1.0
    assert os.path.getsize(tmp_path / "bone.png") > 0
