"""The study database: encrypted at rest, wrong keys refused cleanly, consistent after kill -9,
roles and audit enforced — on SQLCipher and on a real PostgreSQL server."""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import random
import select as io_select
import signal
import time
from pathlib import Path

import keyring
import numpy as np
import pydicom
import pytest
from keyring.backend import KeyringBackend
from sqlalchemy import create_engine, select, text

from medscan.db.models import AuditEntry, Overlay, Patient, Result, Series, Study
from medscan.db.store import Database, restore
from medscan.resources import shared_data_dir
from medscan.scan import MedscanError

DATA = shared_data_dir()
STUDY = DATA / "train" / "mr03_brain_t1_2d_sag_siemens_dicom"
KEY = "correct horse battery staple"
NAME = "Testpatient^Marie"
SCRYPT_N = 2**12  # fast in tests; the default is 2**15


def _blob_root(target) -> Path:
    db, blobs = target
    return Path(blobs) if blobs else Path(db + ".blobs")


def _new(target) -> Database:
    db, blobs = target
    database = Database.create(db, KEY, blob_dir=blobs, scrypt_n=SCRYPT_N)
    database.add_user("rad", "radiologist", "rad-pass")
    database.add_user("res", "researcher", "res-pass")
    return database


def _open(target, key: str = KEY) -> Database:
    db, blobs = target
    return Database.open(db, key, blob_dir=blobs)


# ---------------------------------------------------------------------------------------------
# Encryption at rest
# ---------------------------------------------------------------------------------------------
def test_no_plaintext_in_database_or_blobs(target):
    database = _new(target)
    database.login("rad", "rad-pass")
    series_ids = database.import_folder(STUDY)
    with database.transaction() as session:
        session.add(Patient(patient_id="PID-4711", name=NAME))
        series = session.get(Series, series_ids[0])
        uid = series.series_uid
    # The blob holds the name and the UID in plain bytes before encryption.
    payload = np.frombuffer(f"{NAME} {uid}".encode().ljust(64, b" "), dtype=np.uint8)
    result_id = database.store_result(series_ids[0], payload, operation="clean", affine=np.eye(4))
    _, back = database.load_result(result_id)
    assert back.tobytes() == payload.tobytes()
    database.close()
    real = pydicom.dcmread(next(p for p in sorted(STUDY.rglob("*")) if p.is_file()), stop_before_pixels=True)
    needles = [NAME.encode(), uid.encode(), b"SQLite format 3", str(real.PatientName).encode(),
               str(real.StudyInstanceUID).encode()]  # the imported scan's own name and UID too
    # Ciphertext is random bytes: a megabyte of it holds a given 3-byte string (this sample's
    # PatientName is "HFS") with a chance of a few per cent, so short needles prove nothing and
    # would make the test flaky. Eight bytes or more cannot occur by chance; the SQLite header
    # and the long names and UIDs still prove that the whole file is encrypted.
    needles = [needle for needle in needles if len(needle) >= 8]
    files = [p for p in _blob_root(target).rglob("*") if p.is_file()]
    assert files  # at least the result's blob
    if not target[0].startswith("postgresql"):
        files += [Path(p) for p in glob.glob(target[0] + "*") if Path(p).is_file()]
    for path in files:
        raw = path.read_bytes()
        for needle in needles:
            assert needle not in raw, f"{needle!r} in {path}"


def test_wrong_key_fails_cleanly_and_changes_nothing(target):
    database = _new(target)
    database.close()
    _db, _ = target
    before = _fingerprint(target)
    with pytest.raises(MedscanError) as error:
        _open(target, "wrong passphrase")
    assert "wrong passphrase" in str(error.value) and "\n" not in str(error.value)
    assert _fingerprint(target) == before
    _open(target).close()  # the right key still works


def _fingerprint(target) -> dict[str, str]:
    db, _ = target
    paths = [Path(p) for p in glob.glob(db + "*")] if not db.startswith("postgresql") else []
    paths += [p for p in _blob_root(target).rglob("*") if p.is_file()]
    result = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}
    if db.startswith("postgresql"):
        engine = create_engine(db)
        with engine.connect() as connection:
            result["settings"] = repr(connection.execute(text("SELECT * FROM settings ORDER BY name")).all())
            result["audit"] = repr(connection.execute(text("SELECT count(*) FROM audit_log")).all())
        engine.dispose()
    return result


def test_rekey_backup_restore(tmp_path):
    target = (str(tmp_path / "a.db"), None)
    database = _new(target)
    database.login("rad", "rad-pass")
    series_id = database.import_folder(STUDY)[0]
    result_id = database.store_result(series_id, np.arange(24.0).reshape(2, 3, 4), operation="clean",
                                      affine=np.eye(4))
    archive = database.backup(tmp_path / "backup.tar")
    database.rekey(KEY, "a new passphrase")
    database.close()
    with pytest.raises(MedscanError, match="wrong passphrase"):
        _open(target)
    with _open(target, "a new passphrase") as reopened:
        assert reopened.load_result(result_id)[1].sum() == 276
    assert b"SQLite format 3" not in archive.read_bytes()
    with pytest.raises(MedscanError, match="wrong passphrase"):
        restore(archive, tmp_path / "b.db", "a new passphrase")  # the backup keeps the old key
    assert not (tmp_path / "b.db").exists()
    with restore(archive, tmp_path / "b.db", KEY) as restored:
        assert restored.load_result(result_id)[1].sum() == 276


def test_restore_refuses_a_backup_whose_entries_leave_the_target_folder(tmp_path):
    import io
    import tarfile

    from medscan.db.store import restore

    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        payload = b"not a database"
        member = tarfile.TarInfo("../escaped.db")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    (tmp_path / "restore").mkdir()
    with pytest.raises(MedscanError, match="unsafe entry"):
        restore(archive, tmp_path / "restore" / "b.db", KEY)
    assert not (tmp_path / "escaped.db").exists() and not (tmp_path / "restore" / "b.db").exists()


# ---------------------------------------------------------------------------------------------
# Crash safety: kill -9 at random points
# ---------------------------------------------------------------------------------------------
VOLUME = (16, 64, 64)  # 256 KiB blobs: long enough writes for kills to land inside them


def _writer(db: str, blobs: str | None, series_id: int, ready_fd: int) -> None:
    """Write results forever, through the public API and as one five-row transaction, in turns."""
    database = Database.open(db, KEY, blob_dir=blobs)
    rng = np.random.default_rng()
    os.write(ready_fd, b"r")
    n = 0
    while True:
        n += 1
        volume = rng.random(VOLUME, dtype=np.float32)
        if n % 2:
            database.store_result(series_id, volume, operation="clean-api", affine=np.eye(4), parameters={"n": n})
            continue
        volume_id, heat_id = database.blobs.put_array(volume), database.blobs.put_array(volume[::-1].copy())
        with database.transaction() as session:  # patient, study, series, result, overlay: all or none
            patient = Patient(patient_id=f"P{n}-{rng.integers(1 << 40)}", name="Crash^Test")
            study = Study(patient=patient, study_uid=f"2.25.{rng.integers(1 << 60)}")
            series = Series(study=study, series_uid=f"2.25.{rng.integers(1 << 60)}", number=n)
            result = Result(series=series, operation="clean-multi", blob_id=volume_id, parameters={"n": n})
            session.add_all([patient, study, series, result])
            session.add(Overlay(result=result, kind="gradcam", slices=[0, 1], blob_id=heat_id))


def _kill_writer_at_random(target, series_id: int, delay_s: float) -> None:
    """Fork a writer (no interpreter start-up to pay), let it run ``delay_s``, then SIGKILL it."""
    db, blobs = target
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer: never returns into pytest
        try:
            os.close(read_fd)
            _writer(db, blobs, series_id, write_fd)
        finally:
            os._exit(1)
    os.close(write_fd)
    try:
        ready, _, _ = io_select.select([read_fd], [], [], 60)
        assert ready and os.read(read_fd, 1) == b"r", "the writer did not start"
        time.sleep(delay_s)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_fd)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_kill_minus_9_leaves_a_consistent_database(target):
    database = _new(target)
    database.login("rad", "rad-pass")
    series_id = database.import_folder(STUDY)[0]
    database.close()
    rng = random.Random(5)
    rounds, collected = 24, 0
    for _ in range(rounds):
        _kill_writer_at_random(target, series_id, rng.uniform(0.0, 0.25))
        collected += _check_consistent(target)
    with _open(target) as database, database.transaction() as session:
        operations = set(session.scalars(select(Result.operation)))
    assert collected > 0  # kills did land between a blob and its row (about 20 of 24 rounds), and were cleaned
    assert operations == {"clean-api", "clean-multi"}  # both kinds of write were interrupted and survived


def _check_consistent(target) -> int:
    """The database opens, every row is whole, every named blob decrypts; returns orphans collected."""
    with _open(target) as database:
        with database.transaction() as session:
            if database.engine.dialect.name == "sqlite":
                assert session.execute(text("PRAGMA integrity_check")).scalar() == "ok"
                assert session.execute(text("PRAGMA foreign_key_check")).all() == []
            results = session.scalars(select(Result)).all()
            overlays = session.scalars(select(Overlay)).all()
            multi = [r for r in results if r.operation == "clean-multi"]
            assert len(overlays) == len(multi)  # committed together or not at all
            for result in results:
                assert result.series is not None and result.series.study.patient is not None
        referenced = database.referenced_blobs()
        for blob_id in referenced:  # every row's blob is complete and authentic
            assert database.blobs.get_array(blob_id).shape == VOLUME
        removed = database.collect_orphans(grace_s=0)
        assert database.blobs.ids() == referenced
        assert list((database.blobs.root / "tmp").iterdir()) == []
        return removed


# ---------------------------------------------------------------------------------------------
# Users, roles, audit
# ---------------------------------------------------------------------------------------------
def test_researcher_cannot_export_identifiable_data(target, tmp_path):
    database = _new(target)
    database.login("rad", "rad-pass")
    series_id = database.import_folder(STUDY)[0]
    database.login("res", "res-pass")
    with pytest.raises(MedscanError, match="refused for researcher"):
        database.export_series(series_id, tmp_path / "plain", identifiable=True)
    assert not (tmp_path / "plain").exists()
    out = database.export_series(series_id, tmp_path / "deid", identifiable=False, deid_secret=b"k" * 32)
    files = list(out.rglob("*.dcm"))
    assert len(files) == 35
    with pytest.raises(MedscanError, match="wrong passphrase"):
        database.login("res", "not-her-passphrase")
    with database.transaction() as session:
        log = [(e.user_name, e.action, e.outcome) for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert ("res", "export-identifiable", "refused") in log
    assert ("res", "export", "ok") in log and ("rad", "import", "ok") in log
    assert ("res", "login", "refused") in log
    database.close()


def test_cli_db_commands(tmp_path, monkeypatch, capsys):
    from medscan.db.cli import register

    parser = argparse.ArgumentParser(prog="medscan")
    register(parser.add_subparsers(dest="command", required=True))
    db = str(tmp_path / "cli.db")
    monkeypatch.setenv("MEDSCAN_DB_KEY", KEY)
    monkeypatch.setenv("MEDSCAN_USER", "boss")
    monkeypatch.setenv("MEDSCAN_USER_KEY", "boss-pass")

    def run(*argv: str) -> int:
        args = parser.parse_args(list(argv))
        return args.func(args)

    assert run("db", "init", "--db", db) == 0
    assert run("db", "import", str(STUDY), "--db", db) == 0
    assert run("db", "list", "--db", db) == 0
    assert "MR" in capsys.readouterr().out
    assert run("db", "export", "1", "-o", str(tmp_path / "out"), "--db", db) == 0
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 35
    assert run("db", "backup", "-o", str(tmp_path / "b.tar"), "--db", db) == 0
    monkeypatch.setenv("MEDSCAN_DB_NEW_KEY", "next key")
    assert run("db", "rekey", "--db", db) == 0
    with pytest.raises(MedscanError, match="wrong passphrase"):
        run("db", "list", "--db", db)
    monkeypatch.setenv("MEDSCAN_DB_KEY", "next key")
    assert run("db", "list", "--db", db) == 0


# ---------------------------------------------------------------------------------------------
# medscan clean ... --db: results kept with what produced them; roles; NIfTI exports
# ---------------------------------------------------------------------------------------------
def _cli(monkeypatch, user: str, passphrase: str):
    """Run medscan subcommands in-process (errors raise MedscanError, as main() would print them)."""
    from medscan.cli_ops import register as register_ops
    from medscan.db.cli import register as register_db

    parser = argparse.ArgumentParser(prog="medscan")
    sub = parser.add_subparsers(dest="command", required=True)
    register_db(sub)
    register_ops(sub)
    monkeypatch.setenv("MEDSCAN_DB_KEY", KEY)
    monkeypatch.setenv("MEDSCAN_USER", user)
    monkeypatch.setenv("MEDSCAN_USER_KEY", passphrase)

    def run(*argv: str) -> int:
        args = parser.parse_args(list(argv))
        return args.func(args)

    return run


def test_clean_with_db_keeps_the_result_and_audits_it(target, tmp_path, monkeypatch, capsys):
    from medscan.io import load

    db, blobs = target
    where = ["--db", db, *(["--blobs", blobs] if blobs else [])]
    _new(target).close()
    run = _cli(monkeypatch, "rad", "rad-pass")
    out = tmp_path / "highlight.nii.gz"
    assert run("clean", "highlight", str(STUDY), "-o", str(out), "--strength", "3", *where) == 0
    assert run("clean", "highlight", str(out), "-o", str(tmp_path / "again.nii"), *where) == 0  # NIfTI input
    with _open(target) as database, database.transaction() as session:
        first, second = session.scalars(select(Result).order_by(Result.id)).all()
        assert (first.operation, first.parameters["strength"], first.synthetic) == ("highlight", 3.0, False)
        assert first.quality["notes"] and first.provenance[-1]["operation"] == "highlight"
        assert first.series.modality == "MR" and len(first.series.instances) == 35
        assert second.series.description == "highlight.nii.gz" and second.series.source_path == str(out.resolve())
        _, voxels = database.load_result(first.id)
        np.testing.assert_allclose(voxels, load(out).voxels, atol=1e-3)
        log = [(e.user_name, e.action, e.outcome) for e in session.scalars(select(AuditEntry))]
    assert log.count(("rad", "process", "ok")) == 2

    capsys.readouterr()
    assert run("db", "list", "--results", *where) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 3 and "highlight" in listed[1]
    researcher = _cli(monkeypatch, "res", "res-pass")
    with pytest.raises(MedscanError, match="process refused for researcher"):
        researcher("clean", "highlight", str(STUDY), "-o", str(tmp_path / "res.nii.gz"), *where)
    assert not (tmp_path / "res.nii.gz").exists()  # refused before any work
    # De-identified NIfTI: of a stored result and of a series, both allowed for a researcher.
    assert researcher("db", "export", "--result", str(first.id), "-o", str(tmp_path / "r.nii.gz"), *where) == 0
    np.testing.assert_allclose(load(tmp_path / "r.nii.gz").voxels, voxels, atol=1e-3)
    series_id = str(first.series_ref)
    assert researcher("db", "export", series_id, "-o", str(tmp_path / "s.nii.gz"), *where) == 0
    np.testing.assert_array_equal(load(tmp_path / "s.nii.gz").voxels, load(STUDY).voxels)
    with pytest.raises(MedscanError, match="NIfTI file carries no identity"):
        run("db", "export", series_id, "-o", str(tmp_path / "x.nii.gz"), "--identifiable", *where)
    with _open(target) as database, database.transaction() as session:
        log = [(e.user_name, e.action, e.outcome, e.detail) for e in session.scalars(select(AuditEntry))]
    assert ("res", "process", "refused", "role researcher") in log
    assert ("res", "export", "ok", "de-identified NIfTI") in log and ("res", "export", "ok", "NIfTI") in log


# ---------------------------------------------------------------------------------------------
# The passphrase held in the OS keyring
# ---------------------------------------------------------------------------------------------
class MemoryKeyring(KeyringBackend):
    """A keyring that lives in this process: tests never touch the desktop's."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.entries.pop((service, username))


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


def test_passphrase_held_in_the_keyring(tmp_path, monkeypatch, memory_keyring, capsys):
    from medscan.db import keys

    db = str(tmp_path / "kr.db")
    run = _cli(monkeypatch, "boss", "boss-pass")
    assert run("db", "init", "--db", db, "--keyring") == 0
    assert memory_keyring.entries == {("medscan", str(Path(db).resolve())): KEY}
    monkeypatch.delenv("MEDSCAN_DB_KEY")  # from now on only the keyring knows it (and no terminal to ask)
    assert run("db", "import", str(STUDY), "--db", db) == 0
    monkeypatch.setenv("MEDSCAN_DB_NEW_KEY", "rotated")
    assert run("db", "rekey", "--db", db) == 0  # the keyring entry follows the new passphrase
    assert keys.get_passphrase(db) == "rotated"
    capsys.readouterr()
    assert run("db", "list", "--db", db) == 0 and "t1_fl2d_sag" in capsys.readouterr().out
    memory_keyring.entries[("medscan", str(Path(db).resolve()))] = "stale"
    with pytest.raises(MedscanError, match="wrong passphrase"):
        run("db", "list", "--db", db)
    monkeypatch.setenv("MEDSCAN_DB_KEY", "rotated")  # the environment wins over the keyring
    assert run("db", "list", "--db", db) == 0
    assert keys.forget_passphrase(db) and keys.get_passphrase(db) is None


def test_keyring_refused_cleanly_where_there_is_none(tmp_path, monkeypatch):
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        run = _cli(monkeypatch, "boss", "boss-pass")
        with pytest.raises(MedscanError, match="no OS keyring"):
            run("db", "init", "--db", str(tmp_path / "none.db"), "--keyring")
        assert list(tmp_path.iterdir()) == []  # nothing created
    finally:
        keyring.set_keyring(previous)


def test_denoise_with_db_keeps_model_version_and_fidelity_figures(tmp_path, monkeypatch):
    from medscan.io import load, save
    from medscan.scan import Scan

    full = load(STUDY)  # four slices keep the CPU inference short
    crop = tmp_path / "crop.nii.gz"
    save(Scan(voxels=full.voxels[15:19], affine=full.affine, modality="MR"), crop)
    target = (str(tmp_path / "dn.db"), None)
    _new(target).close()
    run = _cli(monkeypatch, "rad", "rad-pass")
    assert run("clean", "denoise", str(crop), "-o", str(tmp_path / "dn.nii.gz"), "--db", target[0],
               "--device", "cpu") == 0
    with _open(target) as database, database.transaction() as session:
        result = session.scalars(select(Result)).one()
        assert result.operation == "denoise" and result.model_name and result.model_version
        assert {"structure_fraction", "method_noise_std", "flagged"} <= set(result.quality)
        assert {"strength": 1.0, "model": result.model_name, "device": "cpu"}.items() <= result.parameters.items()
        assert result.synthetic is False


def test_export_of_an_image_with_burned_in_text_is_refused_and_audited(tmp_path):
    us = DATA / "conformance" / "pydicom_data" / "gdcm-US-ALOKA-16.dcm"
    if not us.is_file():
        pytest.skip("pydicom_data is not present")
    database = _new((str(tmp_path / "us.db"), None))
    database.login("rad", "rad-pass")
    series_id = database.import_folder(us)[0]
    for out in (tmp_path / "us_dicom", tmp_path / "us.nii.gz"):
        with pytest.raises(MedscanError, match="burned-in"):
            database.export_series(series_id, out, identifiable=False, deid_secret=b"k" * 32)
        assert not out.exists()
    with database.transaction() as session:
        refused = [e.detail for e in session.scalars(select(AuditEntry).where(AuditEntry.outcome == "refused"))]
    assert len(refused) == 2 and all("burned-in" in d for d in refused)
    database.close()
