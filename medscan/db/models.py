"""The study database schema (SQLAlchemy 2.x ORM). Migrations in ``migrations/`` create it.

Large arrays never live in rows: ``blob_id`` columns name encrypted blobs in the blob store,
written before the row (see ``medscan.db.blobs``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import JSON, CheckConstraint, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ROLES = ("radiologist", "technician", "researcher", "admin")
ANNOTATION_KINDS = ("mask", "box", "point", "label")
ANNOTATION_STATES = ("draft", "accepted", "rejected")
JOB_STATES = ("queued", "running", "cancelling", "done", "failed", "cancelled")
TASK_STATES = ("queued", "running", "done", "failed", "cancelled")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of every table; dicts and lists map to JSON columns."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Setting(Base):
    """Key/value facts about this database (wrapped data key, KDF parameters)."""

    __tablename__ = "settings"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class User(Base):
    """An account: name, role (radiologist, technician, researcher, admin) and scrypt passphrase hash."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    passphrase_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)


class Patient(Base):
    """A patient as DICOM identifies them: PatientID with its issuer, name, birth date and sex."""

    __tablename__ = "patients"
    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    issuer: Mapped[str] = mapped_column(String(64), default="")
    name: Mapped[str] = mapped_column(String(324), default="")
    birth_date: Mapped[str] = mapped_column(String(8), default="")
    sex: Mapped[str] = mapped_column(String(16), default="")
    studies: Mapped[list[Study]] = relationship(back_populates="patient", cascade="all, delete-orphan")
    __table_args__ = (UniqueConstraint("patient_id", "issuer"),)


class Study(Base):
    """A DICOM study of a patient (StudyInstanceUID, date, description, accession number)."""

    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(primary_key=True)
    patient_ref: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_date: Mapped[str] = mapped_column(String(8), default="")
    description: Mapped[str] = mapped_column(String(64), default="")
    accession: Mapped[str] = mapped_column(String(16), default="")
    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(back_populates="study", cascade="all, delete-orphan")


class Series(Base):
    """A DICOM series of a study: UID, number, modality, description and the folder it was imported from;
    its instances and the results made from it.
    """

    __tablename__ = "series"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_ref: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    series_uid: Mapped[str] = mapped_column(String(64), index=True)
    number: Mapped[int | None] = mapped_column(Integer)
    modality: Mapped[str] = mapped_column(String(16), default="")
    description: Mapped[str] = mapped_column(String(64), default="")
    source_path: Mapped[str] = mapped_column(Text, default="")
    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series", cascade="all, delete-orphan")
    results: Mapped[list[Result]] = relationship(back_populates="series", cascade="all, delete-orphan")
    __table_args__ = (UniqueConstraint("series_uid", "number"),)


class Instance(Base):
    """A source file (reference only) with the header facts the viewer needs."""

    __tablename__ = "instances"
    id: Mapped[int] = mapped_column(primary_key=True)
    series_ref: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_uid: Mapped[str] = mapped_column(String(64), index=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64), default="")
    path: Mapped[str] = mapped_column(Text)
    frame: Mapped[int | None] = mapped_column(Integer)
    header: Mapped[dict[str, Any]] = mapped_column(default=dict)
    series: Mapped[Series] = relationship(back_populates="instances")


class Result(Base):
    """A derived series: what produced it, how good it is, and where its voxels are."""

    __tablename__ = "results"
    id: Mapped[int] = mapped_column(primary_key=True)
    series_ref: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    operation: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str | None] = mapped_column(String(128))
    model_version: Mapped[str | None] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    quality: Mapped[dict[str, Any]] = mapped_column(default=dict)
    synthetic: Mapped[bool] = mapped_column(default=False)
    affine: Mapped[list[Any]] = mapped_column(default=list)
    provenance: Mapped[list[Any]] = mapped_column(default=list)  # each ProvenanceEntry as a dict
    blob_id: Mapped[str] = mapped_column(String(64), index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    series: Mapped[Series] = relationship(back_populates="results")
    overlays: Mapped[list[Overlay]] = relationship(back_populates="result", cascade="all, delete-orphan")


class Annotation(Base):
    """A finding kept for review: its mask (blob) or geometry, label, author, source (human or ai) and review
    status (draft, accepted, rejected) with measurements.
    """

    __tablename__ = "annotations"
    id: Mapped[int] = mapped_column(primary_key=True)
    series_ref: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # mask, box, point, label
    label: Mapped[str] = mapped_column(String(128), default="")
    geometry: Mapped[dict[str, Any]] = mapped_column(default=dict)  # boxes, points, slice indices
    blob_id: Mapped[str | None] = mapped_column(String(64), index=True)  # masks
    author_ref: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    source: Mapped[str] = mapped_column(String(8), default="human")  # human or ai
    status: Mapped[str] = mapped_column(String(16), default="draft")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    overlays: Mapped[list[Overlay]] = relationship(back_populates="annotation", cascade="all, delete-orphan")


class Overlay(Base):
    """A map kept beside what it belongs to: a result's (uncertainty, generated region) or an annotation's
    explanation (e.g. a finding's IntegratedGradients or occlusion map on one slice). Exactly one owner."""

    __tablename__ = "overlays"
    __table_args__ = (
        CheckConstraint("(result_ref IS NULL) <> (annotation_ref IS NULL)", name="ck_overlays_one_owner"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    result_ref: Mapped[int | None] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), index=True)
    annotation_ref: Mapped[int | None] = mapped_column(ForeignKey("annotations.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    slices: Mapped[list[Any]] = mapped_column(default=list)
    blob_id: Mapped[str] = mapped_column(String(64), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)  # method, model, who made it, when
    result: Mapped[Result | None] = relationship(back_populates="overlays")
    annotation: Mapped[Annotation | None] = relationship(back_populates="overlays")


class Job(Base):
    """A batch run (``medscan batch``): one operation over many series, split into tasks."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # the operation
    state: Mapped[str] = mapped_column(String(16), default="queued")
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the batch spec as given
    total: Mapped[int] = mapped_column(default=0)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now, onupdate=_now)
    tasks: Mapped[list[Task]] = relationship(back_populates="job", cascade="all, delete-orphan",
                                             order_by="Task.position")


class Task(Base):
    """One series of a job. ``attempts`` fences writers: only the latest attempt may finish it."""

    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("job_ref", "position"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_ref: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(Text, default="")
    series_ref: Mapped[int | None] = mapped_column(ForeignKey("series.id", ondelete="SET NULL"))
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)  # files and series key
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    output: Mapped[str] = mapped_column(Text, default="")  # file or folder written
    result_ref: Mapped[int | None] = mapped_column(ForeignKey("results.id", ondelete="SET NULL"))
    worker: Mapped[str] = mapped_column(String(128), default="")
    seconds: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now, onupdate=_now)
    job: Mapped[Job] = relationship(back_populates="tasks")


class SeriesQuality(Base):
    """The quality triage badges of a series (``medscan.screen.quality``), one row per series, replaced on rescreen."""

    __tablename__ = "series_quality"
    id: Mapped[int] = mapped_column(primary_key=True)
    series_ref: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), unique=True)
    worst: Mapped[str] = mapped_column(String(8), default="ok")  # ok | warn | flag
    badges: Mapped[list[Any]] = mapped_column(default=list)  # each Badge as a dict
    rules_version: Mapped[str] = mapped_column(String(16), default="")  # quality.VERSION that made them
    computed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)


class AuditEntry(Base):
    """Who opened, processed or exported what, when, and whether it was allowed."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now, index=True)
    user_name: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))  # open, process, export, login, ...
    target: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(16), default="ok")  # ok, refused, failed
    detail: Mapped[str] = mapped_column(Text, default="")


BLOB_COLUMNS = ((Result, Result.blob_id), (Annotation, Annotation.blob_id), (Overlay, Overlay.blob_id))
