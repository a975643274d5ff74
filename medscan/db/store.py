"""Open, create, rekey, back up and restore a study database; store what users keep.

SQLite files are encrypted as a whole by SQLCipher (``sqlite+pysqlcipher``); a PostgreSQL URL runs
the same code against a server. In both cases large arrays go to the encrypted blob store, whose
data key is wrapped under the passphrase (``medscan.db.crypto``). Every multi-step change is one
transaction, and blobs are durable before the rows that name them are committed.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from medscan.db import crypto
from medscan.db.blobs import BlobStore
from medscan.db.models import (
    BLOB_COLUMNS,
    ROLES,
    AuditEntry,
    Instance,
    Overlay,
    Patient,
    Result,
    Series,
    SeriesQuality,
    Setting,
    Study,
    User,
)
from medscan.scan import MedscanError, Scan

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_MAGIC = b"SQLite format 3\0"


def _is_url(target: str) -> bool:
    return "://" in target


def _sqlite_url(path: Path, passphrase: str) -> URL:
    return URL.create("sqlite+pysqlcipher", password=passphrase, database=str(path))


class Database:
    """One open study database: an engine, its blob store and the signed-in user."""

    def __init__(self, engine: Engine, blobs: BlobStore, label: str, kdf: crypto.KdfParams) -> None:
        self.engine = engine
        self.blobs = blobs
        self.label = label  # what errors name: the file, or the URL without its password
        self._kdf = kdf
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.user: User | None = None

    # -- opening --------------------------------------------------------------------------
    @classmethod
    def create(cls, target: str | Path, passphrase: str, *, blob_dir: str | Path | None = None,
               scrypt_n: int = crypto.DEFAULT_SCRYPT_N) -> Database:
        """A new database (the file must not exist; a PostgreSQL database must be empty)."""
        if not passphrase:
            raise MedscanError(target, "an empty passphrase would leave the database unprotected")
        target_text = str(target)
        if not _is_url(target_text) and Path(target_text).exists():
            raise MedscanError(target, "already exists; open it instead of creating it")
        engine, label, blob_root = _engine(target_text, passphrase, blob_dir)
        _migrate(engine)
        kdf = crypto.KdfParams.fresh(scrypt_n)
        data_key = os.urandom(crypto.KEY_BYTES)
        with Session(engine) as session, session.begin():
            if session.get(Setting, "data_key") is not None:
                raise MedscanError(label, "already holds a medscan database")
            session.add(Setting(name="kdf", value=kdf.encode()))
            session.add(Setting(name="data_key", value=_b64(crypto.wrap_key(passphrase, kdf, data_key))))
        return cls(engine, BlobStore(blob_root, data_key), label, kdf)

    @classmethod
    def open(cls, target: str | Path, passphrase: str, *, blob_dir: str | Path | None = None) -> Database:
        """Open an existing database; a wrong passphrase raises MedscanError and writes nothing."""
        target_text = str(target)
        if not _is_url(target_text) and not Path(target_text).is_file():
            raise MedscanError(target, "no such database (create it with 'medscan db init')")
        engine, label, blob_root = _engine(target_text, passphrase, blob_dir)
        try:
            with engine.connect() as connection:  # reads only: SQLCipher checks the key here
                connection.execute(text("SELECT count(*) FROM sqlite_master" if engine.dialect.name == "sqlite"
                                        else "SELECT 1"))
                kdf_row = _setting(connection, "kdf") if _has_settings(connection) else None
                wrapped = _setting(connection, "data_key") if kdf_row else None
        except DatabaseError as exc:
            engine.dispose()
            if engine.dialect.name == "sqlite":
                raise MedscanError(label, "wrong passphrase, or not a medscan database") from None
            raise MedscanError(label, f"cannot connect ({_first_line(exc)})") from None
        if kdf_row is None or wrapped is None:
            engine.dispose()
            raise MedscanError(label, "not a medscan database")
        kdf = crypto.KdfParams.decode(kdf_row)
        try:
            data_key = crypto.unwrap_key(passphrase, kdf, base64.b64decode(wrapped))
        except crypto.WrongKey:
            engine.dispose()
            raise MedscanError(label, "wrong passphrase") from None
        _migrate(engine)  # a no-op unless this medscan is newer than the file
        return cls(engine, BlobStore(blob_root, data_key), label, kdf)

    def close(self) -> None:
        """Release the database's connections (the object cannot be used afterwards)."""
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed entirely or not at all."""
        with self._sessions() as session, session.begin():
            yield session

    # -- users and audit --------------------------------------------------------------------
    def add_user(self, name: str, role: str, passphrase: str) -> None:
        """Add an account (audited).

        Args:
            name: account name.
            role: one of ``ROLES``.
            passphrase: the account's passphrase (stored as an scrypt hash).

        Raises:
            MedscanError: unknown role, or the name is taken.
        """
        if role not in ROLES:
            raise MedscanError(name, f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
        with self.transaction() as session:
            if session.scalar(select(User).where(User.name == name)) is not None:
                raise MedscanError(name, "user already exists")
            session.add(User(name=name, role=role, passphrase_hash=crypto.hash_passphrase(passphrase, self._kdf.n)))
        self.audit("add-user", f"{name} ({role})")

    def login(self, name: str, passphrase: str) -> User:
        """Sign ``name`` in; every later action is audited under that account.

        Returns:
            The account.

        Raises:
            MedscanError: unknown user or wrong passphrase (one message for both; the refusal is audited).
        """
        with self.transaction() as session:
            user = session.scalar(select(User).where(User.name == name))
        if user is None or not crypto.verify_passphrase(passphrase, user.passphrase_hash):
            self.audit("login", name, outcome="refused", user_name=name)
            raise MedscanError(name, "unknown user or wrong passphrase")
        self.user = user
        self.audit("login", name)
        return user

    def audit(self, action: str, target: str, *, outcome: str = "ok", detail: str = "",
              user_name: str | None = None) -> None:
        """Record an action in its own transaction, so refusals are kept even when nothing else is."""
        who = user_name or (self.user.name if self.user else "-")
        with self.transaction() as session:
            session.add(AuditEntry(user_name=who, action=action, target=target, outcome=outcome, detail=detail))

    def require_role(self, action: str, target: str, allowed: tuple[str, ...]) -> None:
        """Refuse ``action`` on ``target`` unless the signed-in user has one of the ``allowed`` roles.

        Raises:
            MedscanError: nobody is signed in or the role is not allowed (the refusal is audited).
        """
        if self.user is None or self.user.role not in allowed:
            role = self.user.role if self.user else "nobody signed in"
            self.audit(action, target, outcome="refused", detail=f"role {role}")
            raise MedscanError(target, f"{action} refused for {role}: needs {' or '.join(allowed)}")

    # -- studies and results ------------------------------------------------------------------
    def import_folder(self, path: str | Path) -> list[int]:
        """Register every series under ``path`` (references and headers, not pixels); returns series ids."""
        from medscan.io.dicom import list_series

        self.require_role("import", str(path), ("radiologist", "technician", "admin"))
        return self.import_listing(list_series(path), str(path))

    def import_listing(self, listing: Any, label: str) -> list[int]:
        """Register the series of a folder listing (role checked by the caller); ids in listing order."""
        with self.transaction() as session:
            ids = [_upsert_series(session, record).id for record in listing.series]
        self.audit("import", label, detail=f"{len(ids)} series")
        return ids

    def register_file(self, path: str | Path, modality: str) -> int:
        """A series row for a NIfTI file (no DICOM identity to key it on): keyed by the file's full path."""
        path = Path(path).resolve()
        key = "nifti:" + hashlib.sha1(str(path).encode()).hexdigest()
        with self.transaction() as session:
            series = session.scalar(select(Series).where(Series.series_uid == key))
            if series is None:
                patient = session.scalar(select(Patient).where(Patient.patient_id == "", Patient.issuer == "nifti"))
                patient = patient or Patient(patient_id="", issuer="nifti")
                study = Study(patient=patient, study_uid=key)
                series = Series(study=study, series_uid=key, modality=modality[:16], description=path.name[:64],
                                source_path=str(path))
                session.add(series)
                session.flush()
            series_id = series.id
        self.audit("import", str(path), detail="NIfTI file")
        return series_id

    def store_result(self, series_id: int, voxels: np.ndarray, *, operation: str, affine: np.ndarray,
                     model_name: str | None = None, model_version: str | None = None,
                     parameters: dict[str, Any] | None = None, quality: dict[str, Any] | None = None,
                     synthetic: bool = False, provenance: list[dict[str, Any]] | None = None,
                     overlays: dict[str, np.ndarray] | None = None,
                     before_commit: Callable[[Session, int], None] | None = None) -> int:
        """Keep a derived volume: blobs first (durable), then its rows in one transaction.

        ``overlays`` (e.g. a generated result's uncertainty map and generated-region mask, same shape as
        the voxels) are kept with it, each naming the planes where it is non-zero.
        ``before_commit(session, result_id)`` joins that transaction (a batch task marks itself done
        there, so a result and its task's state are committed together or not at all).
        """
        blob_id = self.blobs.put_array(np.asarray(voxels))
        overlay_blobs = {kind: (self.blobs.put_array(np.asarray(values)),
                                np.flatnonzero(np.asarray(values).reshape(-1, *np.shape(values)[-2:]).any(axis=(1, 2))))
                         for kind, values in (overlays or {}).items()}
        with self.transaction() as session:
            if session.get(Series, series_id) is None:
                raise MedscanError(self.label, f"no series with id {series_id}")
            result = Result(
                series_ref=series_id, operation=operation, model_name=model_name, model_version=model_version,
                parameters=parameters or {}, quality=quality or {}, synthetic=synthetic,
                affine=np.asarray(affine, float).tolist(), provenance=provenance or [], blob_id=blob_id,
                created_by=self.user.id if self.user else None,
            )
            session.add(result)
            session.flush()
            result_id = result.id
            for kind, (overlay_blob, planes) in overlay_blobs.items():
                session.add(Overlay(result_ref=result_id, kind=kind[:32], slices=[int(p) for p in planes],
                                    blob_id=overlay_blob))
            if before_commit is not None:
                before_commit(session, result_id)
        self.audit("process", f"series {series_id}", detail=f"{operation} -> result {result_id}")
        return result_id

    def store_quality(self, series_id: int, badges: list[Any], *, rules_version: str = "") -> None:
        """Keep a series' quality triage badges (dicts or ``Badge``s), replacing any earlier screening."""
        rows = [b if isinstance(b, dict) else b.to_dict() for b in badges]
        levels = ("ok", "warn", "flag")
        worst = max((str(r.get("level", "ok")) for r in rows), key=lambda v: levels.index(v) if v in levels else 0,
                    default="ok")
        with self.transaction() as session:
            if session.get(Series, series_id) is None:
                raise MedscanError(self.label, f"no series with id {series_id}")
            row = session.scalar(select(SeriesQuality).where(SeriesQuality.series_ref == series_id))
            if row is None:
                row = SeriesQuality(series_ref=series_id)
                session.add(row)
            row.badges, row.worst, row.rules_version = rows, worst, rules_version
            row.computed_at = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        self.audit("screen", f"series {series_id}", detail=f"quality {worst}")

    def load_quality(self, series_id: int) -> dict[str, Any] | None:
        """A series' stored badges: {'worst', 'badges', 'rules_version', 'computed_at'}, or None if never screened."""
        with self.transaction() as session:
            row = session.scalar(select(SeriesQuality).where(SeriesQuality.series_ref == series_id))
            if row is None:
                return None
            return {"worst": row.worst, "badges": list(row.badges), "rules_version": row.rules_version,
                    "computed_at": row.computed_at.isoformat(timespec="seconds")}

    def load_result(self, result_id: int) -> tuple[Result, np.ndarray]:
        """A kept result's row and its voxels (audited as an open).

        Raises:
            MedscanError: no result with that id.
        """
        with self.transaction() as session:
            result = session.get(Result, result_id)
            if result is None:
                raise MedscanError(self.label, f"no result with id {result_id}")
        self.audit("open", f"result {result_id}")
        return result, self.blobs.get_array(result.blob_id)

    def load_overlays(self, result_id: int) -> dict[str, np.ndarray]:
        """A result's kept maps by kind (e.g. 'uncertainty', 'generated')."""
        with self.transaction() as session:
            result = session.get(Result, result_id)
            if result is None:
                raise MedscanError(self.label, f"no result with id {result_id}")
            blobs = {o.kind: o.blob_id for o in result.overlays}
        return {kind: self.blobs.get_array(blob_id) for kind, blob_id in blobs.items()}

    def referenced_blobs(self) -> set[str]:
        """The ids of every blob some row names (results, masks, overlays); the rest may be collected."""
        with self.transaction() as session:
            return {b for _, column in BLOB_COLUMNS for b in session.scalars(select(column)) if b}

    def collect_orphans(self, grace_s: float = 3600.0) -> int:
        """Remove blobs that no row names (left by a crash between blob and row)."""
        return self.blobs.collect(self.referenced_blobs(), grace_s)

    def export_series(self, series_id: int, out: str | Path, *, identifiable: bool,
                      deid_secret: bytes | None = None) -> Path:
        """Copy a series out: its files as they are (not for researchers), de-identified DICOM, or one
        NIfTI file (``out`` ending .nii/.nii.gz), which is always de-identified: it has no place for identity."""
        from medscan.deid import DeidOptions, deidentify_folder
        from medscan.deid_nifti import deidentify_to_nifti
        from medscan.io.nifti import is_nifti

        target = f"series {series_id} -> {out}"
        nifti = is_nifti(out)
        if nifti and identifiable:
            raise MedscanError(out, "a NIfTI file carries no identity; export it without --identifiable")
        if identifiable:
            self.require_role("export-identifiable", target, ("radiologist", "technician", "admin"))
        else:
            self.require_role("export", target, ROLES)
        with self.transaction() as session:
            series = session.get(Series, series_id)
            if series is None:
                raise MedscanError(self.label, f"no series with id {series_id}")
            source = series.source_path
            paths = [Path(p) for p in session.scalars(select(Instance.path).where(Instance.series_ref == series_id))]
        kind = "de-identified NIfTI" if nifti else "identifiable" if identifiable else "de-identified"
        try:
            if nifti:
                deidentify_to_nifti(source or os.path.commonpath(paths), out, files=[str(p) for p in paths])
            else:
                with tempfile.TemporaryDirectory(prefix="medscan-export-") as staging:
                    for index, path in enumerate(sorted(set(paths))):
                        os.symlink(path.resolve(), Path(staging) / f"{index:06d}.dcm")
                    if identifiable:
                        shutil.copytree(staging, out, symlinks=False)
                    else:
                        deidentify_folder(staging, out, DeidOptions(date_shift=True), secret=deid_secret)
        except MedscanError as exc:  # e.g. burned-in text: the refusal is kept too
            self.audit("export", target, outcome="refused", detail=f"{kind}: {exc.problem[:200]}")
            raise
        self.audit("export", target, detail=kind)
        return Path(out)

    def export_result(self, result_id: int, out: str | Path) -> Path:
        """A stored result as one NIfTI file: voxels, geometry and modality, nothing identifying.

        A synthetic result's file is named synthetic and its kept overlays (uncertainty, generated region)
        are written beside it, exactly as the CLI writes a fresh result.
        """
        from medscan.deid_nifti import burned_in_refusal
        from medscan.io.nifti import is_nifti
        from medscan.io.result_files import companion_path, synthetic_path

        out = Path(out)
        target = f"result {result_id} -> {out}"
        self.require_role("export", target, ROLES)
        if not is_nifti(out):
            raise MedscanError(out, "a result is exported as NIfTI: name a .nii or .nii.gz file")
        with self.transaction() as session:
            result = session.get(Result, result_id)
            if result is None:
                raise MedscanError(self.label, f"no result with id {result_id}")
            modality = result.series.modality or "OT"
            paths = list(session.scalars(select(Instance.path).where(Instance.series_ref == result.series_ref)))
            overlays = {o.kind: o.blob_id for o in result.overlays}
        out = synthetic_path(out) if result.synthetic else out
        files = {out: result.blob_id, **{companion_path(out, kind): blob for kind, blob in overlays.items()}}
        for path in files:
            if path.exists():
                raise MedscanError(path, "already exists; choose a new file")
        risk = burned_in_refusal(p for p in paths if Path(p).is_file())
        if risk:
            self.audit("export", target, outcome="refused", detail="burned-in text")
            raise MedscanError(out, f"{risk}; refusing to export")
        if not out.parent.is_dir():
            raise MedscanError(out, "output folder does not exist")
        written: list[Path] = []
        try:
            for path, blob_id in reversed(files.items()):  # companions first, the image last
                scan = Scan(voxels=self.blobs.get_array(blob_id), affine=np.asarray(result.affine, float),
                            modality=modality, synthetic=result.synthetic)
                written.append(_write_anonymous_nifti(scan, path))
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        self.audit("export", target, detail="NIfTI" + (f" with {', '.join(overlays)}" if overlays else ""))
        return out

    # -- keys, backup, restore ----------------------------------------------------------------
    def rekey(self, old_passphrase: str, new_passphrase: str) -> None:
        """New passphrase: SQLCipher re-encrypts the file; the blob data key is re-wrapped (blobs stay)."""
        if not new_passphrase:
            raise MedscanError(self.label, "an empty passphrase would leave the database unprotected")
        with self.transaction() as session:
            wrapped = base64.b64decode(session.get(Setting, "data_key").value)
            try:
                data_key = crypto.unwrap_key(old_passphrase, self._kdf, wrapped)
            except crypto.WrongKey:
                raise MedscanError(self.label, "wrong passphrase") from None
            kdf = crypto.KdfParams.fresh(self._kdf.n)
            session.get(Setting, "kdf").value = kdf.encode()
            session.get(Setting, "data_key").value = _b64(crypto.wrap_key(new_passphrase, kdf, data_key))
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as connection:
                quoted = new_passphrase.replace("'", "''")
                connection.exec_driver_sql(f"PRAGMA rekey = '{quoted}'")
            path = self.engine.url.database
            self.engine.dispose()
            self.engine = create_engine(_sqlite_url(Path(path), new_passphrase))
            _enable_foreign_keys(self.engine)
            self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._kdf = kdf
        self.audit("rekey", self.label)

    def backup(self, out: str | Path) -> Path:
        """An encrypted archive (SQLite only): the SQLCipher file and the encrypted blobs, consistent."""
        out = Path(out)
        if self.engine.dialect.name != "sqlite":
            raise MedscanError(self.label, "back up a PostgreSQL database with pg_dump and copy its blob folder")
        if out.exists():
            raise MedscanError(out, "already exists; choose a new file")
        db_path = Path(self.engine.url.database)
        tmp = out.with_name(f".{out.name}.partial")
        with self.engine.connect() as connection:
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # writers wait while we copy
            try:
                with tarfile.open(tmp, "w") as tar:
                    tar.add(db_path, arcname="medscan.db")
                    for blob_id in sorted(self.blobs.ids()):
                        tar.add(self.blobs.path(blob_id), arcname=f"blobs/{blob_id[:2]}/{blob_id}")
            finally:
                connection.exec_driver_sql("ROLLBACK")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
        self.audit("backup", str(out))
        return out


def _extract_safely(tar: tarfile.TarFile, folder: Path, archive: Path) -> None:
    """Unpack ``tar`` into ``folder`` refusing links, devices and paths that leave it.

    tarfile's ``filter="data"`` does exactly this, but only from Python 3.11.4; Debian 12's python3 is 3.11.2,
    where the same checks are made here before a plain extract.
    """
    if hasattr(tarfile, "data_filter"):
        try:
            tar.extractall(folder, filter="data")
        except tarfile.FilterError as error:
            raise MedscanError(archive, f"unsafe entry in the backup ({error}); refusing to restore it") from None
        return
    root = folder.resolve()
    for member in tar.getmembers():
        inside = (root / member.name).resolve()
        if not (member.isfile() or member.isdir()) or (inside != root and root not in inside.parents):
            raise MedscanError(archive, f"unsafe entry {member.name!r} in the backup; refusing to restore it")
    tar.extractall(folder)  # every member was checked above


def restore(archive: str | Path, target: str | Path, passphrase: str) -> Database:
    """Unpack a backup into a new file (never over an existing one) and open it to prove the key."""
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise MedscanError(target, "already exists; restore into a new file")
    if not archive.is_file():
        raise MedscanError(archive, "no such backup")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with tarfile.open(archive) as tar:
            _extract_safely(tar, staging, archive)
        if not (staging / "medscan.db").is_file():
            raise MedscanError(archive, "not a medscan backup")
        Database.open(staging / "medscan.db", passphrase, blob_dir=staging / "blobs").close()
        if (staging / "blobs").exists():
            os.replace(staging / "blobs", _blob_dir_for(target))
        os.replace(staging / "medscan.db", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    database = Database.open(target, passphrase)
    database.audit("restore", f"{archive} -> {target}")
    return database


def _blob_dir_for(path: Path) -> Path:
    return path.with_name(path.name + ".blobs")


def _engine(target: str, passphrase: str, blob_dir: str | Path | None) -> tuple[Engine, str, Path]:
    if _is_url(target):
        url = make_url(target)
        if url.get_backend_name() != "postgresql":
            raise MedscanError(url.render_as_string(hide_password=True), "only PostgreSQL URLs or SQLite files")
        if blob_dir is None:
            raise MedscanError(url.render_as_string(hide_password=True), "a PostgreSQL database needs --blobs DIR")
        engine = create_engine(url, pool_pre_ping=True)
        return engine, url.render_as_string(hide_password=True), Path(blob_dir)
    path = Path(target).resolve()
    engine = create_engine(_sqlite_url(path, passphrase))
    _enable_foreign_keys(engine)
    return engine, str(target), Path(blob_dir) if blob_dir else _blob_dir_for(path)


def _enable_foreign_keys(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA cipher_log_level = NONE")  # a wrong key is reported once, by us
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA secure_delete = ON")  # deleted rows do not linger in free pages
        cursor.close()


def _migrate(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except OperationalError as exc:
        raise MedscanError(str(engine.url.database or engine.url), f"cannot migrate ({_first_line(exc)})") from None


def _has_settings(connection: Any) -> bool:
    from sqlalchemy import inspect

    return inspect(connection).has_table("settings")


def _setting(connection: Any, name: str) -> str | None:
    return connection.execute(select(Setting.value).where(Setting.name == name)).scalar()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _write_anonymous_nifti(scan: Scan, out: Path) -> Path:
    """Written under a temporary name and checked to carry nothing identifying before it takes ``out``."""
    from medscan.deid_nifti import check_anonymous_nifti
    from medscan.io.nifti import write_nifti

    suffix = ".nii.gz" if out.name.lower().endswith(".gz") else ".nii"
    fd, tmp_name = tempfile.mkstemp(prefix=".medscan-export-", suffix=suffix, dir=out.parent)
    os.close(fd)
    try:
        write_nifti(scan, tmp_name)
        check_anonymous_nifti(tmp_name)
        os.replace(tmp_name, out)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return out


def _first_line(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", exc)).strip()
    return text_.splitlines()[0][:160] if text_ else type(exc).__name__


def _upsert_series(session: Session, record: Any) -> Series:
    header = record.header
    pid = str(header.get("PatientID", "") or "")
    issuer = str(header.get("IssuerOfPatientID", "") or "")
    patient = session.scalar(select(Patient).where(Patient.patient_id == pid, Patient.issuer == issuer))
    if patient is None:
        patient = Patient(patient_id=pid, issuer=issuer, name=str(header.get("PatientName", "") or ""),
                          birth_date=str(header.get("PatientBirthDate", "") or ""),
                          sex=str(header.get("PatientSex", "") or ""))
        session.add(patient)
    study_uid = str(header.get("StudyInstanceUID", "") or f"unknown:{record.series_uid}")
    study = session.scalar(select(Study).where(Study.study_uid == study_uid))
    if study is None:
        study = Study(patient=patient, study_uid=study_uid, study_date=str(header.get("StudyDate", "") or ""),
                      description=str(header.get("StudyDescription", "") or "")[:64],
                      accession=str(header.get("AccessionNumber", "") or "")[:16])
        session.add(study)
    series = session.scalar(select(Series).where(Series.series_uid == record.series_uid,
                                                 Series.number == record.series_number))
    if series is None:
        series = Series(study=study, series_uid=record.series_uid, number=record.series_number,
                        modality=record.modality, description=record.description[:64],
                        source_path=os.path.commonpath(record.files) if record.files else "")
        session.add(series)
        for frame in record.frames:
            series.instances.append(Instance(sop_uid=frame.sop_instance_uid, sop_class_uid=frame.sop_class_uid,
                                             path=frame.path, frame=frame.frame_index,
                                             header={"rows": frame.rows, "columns": frame.columns}))
    session.flush()
    return series
