"""The SCU side: C-ECHO, C-FIND (study level, series on request), C-GET/C-MOVE retrieve and C-STORE send.

Every function raises ``MedscanError(node.name, problem)`` for anything a person can act on (unreachable host,
rejected AE, refused presentation context, time-out, an association aborted midway), so the CLI prints one line.
A retrieve publishes files only when every instance arrived; a partial one says how many did ("retrieved 118 of
120 instances") and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom import sop_class as sc
from pynetdicom.association import Association

from medscan.net.nodes import Node
from medscan.scan import MedscanError

DEFAULT_AE = "MEDSCAN"
DEFAULT_TIMEOUT_S = 10.0  # connect, association and each DIMSE reply; keeps every failure under 15 s
MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are the odd numbers 1-255

UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
# What we can decode (pydicom + pylibjpeg/pyjpegls), so what a listener or a retrieve accepts as sent.
RECEIVE_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                    ExplicitVRBigEndian, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1,
                    JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, RLELossless, HTJ2KLossless,
                    HTJ2KLosslessRPCL, HTJ2K]
# C-GET stores over our own association, whose 128 contexts must be chosen up front: one context per
# (image class, encoding) so the PACS can send each instance as it is stored, no transcoding on either side.
_GET_IMAGE_CLASSES = [sc.CTImageStorage, sc.MRImageStorage, sc.EnhancedCTImageStorage, sc.EnhancedMRImageStorage,
                      sc.SecondaryCaptureImageStorage, sc.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
                      sc.PositronEmissionTomographyImageStorage, sc.UltrasoundImageStorage,
                      sc.UltrasoundMultiFrameImageStorage, sc.ComputedRadiographyImageStorage,
                      sc.DigitalXRayImageStorageForPresentation, sc.DigitalMammographyXRayImageStorageForPresentation,
                      sc.XRayAngiographicImageStorage, sc.NuclearMedicineImageStorage, sc.RTDoseStorage]
_GET_IMAGE_SYNTAXES = [list(UNCOMPRESSED), [JPEG2000Lossless], [JPEG2000], [JPEGLSLossless], [JPEGLosslessSV1],
                       [JPEGLossless], [RLELossless], [JPEGBaseline8Bit]]
_GET_OTHER_CLASSES = [sc.SegmentationStorage, sc.BasicTextSRStorage, sc.EnhancedSRStorage,
                      sc.ComprehensiveSRStorage, sc.RTStructureSetStorage, sc.GrayscaleSoftcopyPresentationStateStorage]

Audit = Callable[..., None]  # Database.audit(action, target, outcome=, detail=)
Progress = Callable[[int, int], None]  # (done, total; 0 while unknown)

_REJECT_REASONS = {
    (1, 1): "no reason given", (1, 2): "application context not supported",
    (1, 3): "our calling AE title is not recognised", (1, 7): "its called AE title is not what we asked for",
    (2, 1): "no reason given", (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion", (3, 2): "too many associations (local limit exceeded)",
}


def _status_name(status: int) -> str:
    from pynetdicom.status import code_to_category

    return f"0x{status:04X} ({code_to_category(status).lower()})"


def _failure(node: Node, problem: str) -> MedscanError:
    return MedscanError(node.name, problem)


def client_ssl_context(node: Node) -> ssl.SSLContext | None:
    """TLS towards ``node`` when its entry names a CA or a certificate of ours."""
    if not node.uses_tls:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=node.tls_ca)
        context.check_hostname = False  # PACS certificates rarely carry their IP address; the CA is what we check
        if node.tls_cert:
            context.load_cert_chain(node.tls_cert, node.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise _failure(node, f"cannot set up TLS: {exc}") from None
    return context


def _make_ae(calling_ae: str, timeout: float) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.connection_timeout = timeout
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    return ae


def _why_unreachable(node: Node, timeout: float) -> str:
    """Name the network problem after pynetdicom could not connect (it only logs the reason)."""
    try:
        with socket.create_connection((node.host, node.port), timeout=timeout):
            return "connected, but the DICOM association did not start (not a DICOM port, or TLS expected?)"
    except socket.gaierror:
        return f"unknown host '{node.host}'"
    except ConnectionRefusedError:
        return f"connection refused on port {node.port} (nothing listening)"
    except TimeoutError:
        return f"no answer within {timeout:g} s (host down or blocked by a firewall)"
    except OSError as exc:
        return f"cannot connect: {exc.strerror or exc}"


def associate(node: Node, calling_ae: str, contexts: list[Any], *, timeout: float = DEFAULT_TIMEOUT_S,
              roles: list[Any] | None = None, handlers: list[Any] | None = None) -> Association:
    """An established association, or a one-line error saying why there is none."""
    ae = _make_ae(calling_ae, timeout)
    ae.requested_contexts = contexts
    tls = client_ssl_context(node)
    connected = threading.Event()
    kwargs: dict[str, Any] = {"ae_title": node.ae_title, "ext_neg": roles or [],
                              "evt_handlers": [*(handlers or []), (evt.EVT_CONN_OPEN, lambda _e: connected.set())]}
    if tls is not None:
        kwargs["tls_args"] = (tls, None)
    started = time.monotonic()
    try:
        assoc = ae.associate(node.host, node.port, **kwargs)
    except socket.gaierror:
        raise _failure(node, f"unknown host '{node.host}'") from None
    except OSError as exc:
        raise _failure(node, f"cannot connect: {exc.strerror or exc}") from None
    if assoc.is_established:
        _no_delay(assoc)
        return assoc
    if assoc.is_rejected:
        rsp = assoc.acceptor.primitive
        source, reason = (rsp.result_source, rsp.diagnostic) if rsp is not None else (0, 0)
        why = _REJECT_REASONS.get((source, reason), f"source {source}, reason {reason}")
        if (source, reason) == (1, 3):
            why = f"rejected our calling AE title '{calling_ae}' (not known to the PACS)"
        elif (source, reason) == (1, 7):
            why = f"rejected the called AE title '{node.ae_title}' (the PACS has another AE title)"
        else:
            why = f"rejected the association: {why}"
        raise _failure(node, why)
    rsp = assoc.acceptor.primitive
    if rsp is not None and getattr(rsp, "result", None) == 0:
        offered = sorted({str(cx.abstract_syntax.name) for cx in contexts})
        raise _failure(node, f"refused every presentation context we proposed ({', '.join(offered)[:200]})")
    if connected.is_set():
        if time.monotonic() - started >= 0.9 * timeout:
            raise _failure(node, f"accepted the connection but did not answer the association request within "
                                 f"{timeout:g} s (not a DICOM port, or TLS expected?)")
        raise _failure(node, "closed the connection without answering the association request (TLS expected, "
                             "or TLS not spoken there?)")
    if time.monotonic() - started >= 0.9 * timeout:
        raise _failure(node, f"no answer within {timeout:g} s (host down or blocked by a firewall)")
    raise _failure(node, _why_unreachable(node, min(timeout, 2.0)))  # failed fast: ask the OS why


def _no_delay(assoc: Association) -> None:
    """Send each PDU at once: with Nagle's algorithm a C-STORE's last small PDU waits for the peer's delayed ACK."""
    raw = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if raw is not None:
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def no_delay_handler(event: Any) -> None:
    """EVT_CONN_OPEN handler for our SCPs (see ``_no_delay``)."""
    _no_delay(event.assoc)


def _audit(audit: Audit | None, action: str, target: str, *, outcome: str = "ok", detail: str = "") -> None:
    if audit is not None:
        audit(action, target, outcome=outcome, detail=detail[:500])


# ---------------------------------------------------------------------------------------------
# C-ECHO
# ---------------------------------------------------------------------------------------------
def echo(node: Node, *, calling_ae: str = DEFAULT_AE, timeout: float = DEFAULT_TIMEOUT_S) -> float:
    """C-ECHO round trip in seconds, association included."""
    started = time.perf_counter()
    assoc = associate(node, calling_ae, [build_context(sc.Verification)], timeout=timeout)
    try:
        since = time.monotonic()
        status = assoc.send_c_echo()
        if not status or "Status" not in status:
            raise _failure(node, _lost(assoc, timeout, "C-ECHO", since))
        if status.Status != 0:
            raise _failure(node, f"C-ECHO failed with status {_status_name(status.Status)}")
    finally:
        assoc.release()
    return time.perf_counter() - started


def _lost(assoc: Association, timeout: float, what: str, since: float | None = None) -> str:
    """Why a reply is missing: pynetdicom gives an empty status both for a time-out and a dropped association."""
    waited = time.monotonic() - since if since is not None else None
    if assoc.is_aborted or (waited is not None and waited < 0.9 * timeout):
        return f"aborted the association during {what}"
    return f"no {what} response within {timeout:g} s"


# ---------------------------------------------------------------------------------------------
# C-FIND
# ---------------------------------------------------------------------------------------------
@dataclass
class SeriesMatch:
    """One series of a C-FIND study match: UID, modality, series number, description and number of instances
    (``None`` when the node does not say).
    """

    series_uid: str
    modality: str
    number: str
    description: str
    instances: int | None

    def to_dict(self) -> dict[str, Any]:
        """The match as JSON-able data."""
        return {"series_uid": self.series_uid, "modality": self.modality, "number": self.number,
                "description": self.description, "instances": self.instances}


@dataclass
class StudyMatch:
    """One study as the PACS reports it (``series_count``/``instances`` are None when it does not say)."""

    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    accession: str
    modalities: list[str]
    description: str
    series_count: int | None
    instances: int | None
    series: list[SeriesMatch] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The match as JSON-able data (``series_list`` only when series were asked for)."""
        out = {"study_uid": self.study_uid, "patient_id": self.patient_id, "patient_name": self.patient_name,
               "study_date": self.study_date, "accession": self.accession, "modalities": self.modalities,
               "description": self.description, "series": self.series_count, "instances": self.instances}
        if self.series:
            out["series_list"] = [s.to_dict() for s in self.series]
        return out


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _multi(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v for v in value.split("\\") if v]
    return [str(v) for v in value]


def _run_find(assoc: Association, node: Node, query: Dataset, timeout: float) -> list[Dataset]:
    matches = []
    since = time.monotonic()
    for status, identifier in assoc.send_c_find(query, sc.StudyRootQueryRetrieveInformationModelFind):
        if not status or "Status" not in status:
            raise _failure(node, _lost(assoc, timeout, "C-FIND", since) + f" after {len(matches)} match(es)")
        since = time.monotonic()
        if status.Status in (0xFF00, 0xFF01):
            if identifier is not None:
                matches.append(identifier)
        elif status.Status != 0:
            raise _failure(node, f"C-FIND failed with status {_status_name(status.Status)}")
    return matches


def find_studies(node: Node, *, patient_id: str = "", patient_name: str = "", study_date: str = "",
                 modality: str = "", accession: str = "", study_uid: str = "", with_series: bool = False,
                 calling_ae: str = DEFAULT_AE, timeout: float = DEFAULT_TIMEOUT_S,
                 audit: Audit | None = None) -> list[StudyMatch]:
    """Study-level C-FIND (Study Root); empty filters match everything. ``study_date`` is a DICOM date or
    range (``20240101-20241231``, ``20240101-``). With ``with_series`` each study's series are listed too."""
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    query.PatientID = patient_id
    query.PatientName = patient_name
    query.StudyDate = study_date
    query.AccessionNumber = accession
    query.ModalitiesInStudy = modality
    query.StudyDescription = ""
    query.NumberOfStudyRelatedSeries = ""
    query.NumberOfStudyRelatedInstances = ""
    filters = ", ".join(f"{k}={v}" for k, v in (("patient_id", patient_id), ("patient_name", patient_name),
                                                 ("study_date", study_date), ("modality", modality),
                                                 ("accession", accession), ("study", study_uid)) if v)
    assoc = associate(node, calling_ae, [build_context(sc.StudyRootQueryRetrieveInformationModelFind)],
                      timeout=timeout)
    try:
        studies = []
        for ds in _run_find(assoc, node, query, timeout):
            studies.append(StudyMatch(
                study_uid=_text(ds.get("StudyInstanceUID")), patient_id=_text(ds.get("PatientID")),
                patient_name=_text(ds.get("PatientName")), study_date=_text(ds.get("StudyDate")),
                accession=_text(ds.get("AccessionNumber")), modalities=_multi(ds.get("ModalitiesInStudy")),
                description=_text(ds.get("StudyDescription")),
                series_count=_int_or_none(ds.get("NumberOfStudyRelatedSeries")),
                instances=_int_or_none(ds.get("NumberOfStudyRelatedInstances"))))
        if modality:  # some PACS ignore ModalitiesInStudy as a key; the filter is ours to keep
            studies = [s for s in studies if not s.modalities or modality.upper() in (m.upper() for m in s.modalities)]
        if with_series:
            for study in studies:
                study.series = _find_series(assoc, node, study.study_uid, timeout)
                if study.series_count is None:
                    study.series_count = len(study.series)
    except MedscanError as exc:
        _audit(audit, "dicom-query", node.address, outcome="failed", detail=f"{filters}: {exc.problem}")
        raise
    finally:
        if assoc.is_established:
            assoc.release()
    _audit(audit, "dicom-query", node.address, detail=f"{filters or 'all'}: {len(studies)} study(ies)")
    return studies


def _find_series(assoc: Association, node: Node, study_uid: str, timeout: float) -> list[SeriesMatch]:
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = ""
    query.Modality = ""
    query.SeriesNumber = ""
    query.SeriesDescription = ""
    query.NumberOfSeriesRelatedInstances = ""
    series = [SeriesMatch(series_uid=_text(ds.get("SeriesInstanceUID")), modality=_text(ds.get("Modality")),
                          number=_text(ds.get("SeriesNumber")), description=_text(ds.get("SeriesDescription")),
                          instances=_int_or_none(ds.get("NumberOfSeriesRelatedInstances")))
              for ds in _run_find(assoc, node, query, timeout)]
    return sorted(series, key=lambda s: (_int_or_none(s.number) or 0, s.series_uid))


# ---------------------------------------------------------------------------------------------
# C-GET / C-MOVE
# ---------------------------------------------------------------------------------------------
@dataclass
class RetrieveReport:
    """What a retrieve did.

    Attributes:
        method: ``"C-GET"`` or ``"C-MOVE"`` (after a refused C-GET).
        received: instances written.
        expected: instances the node announced.
        folder: where they were written.
        seconds: wall-clock time.
    """

    method: str  # "C-GET" or "C-MOVE"
    received: int
    expected: int
    folder: Path
    seconds: float


class _Receiver:
    """Writes each received instance, as it was encoded, into a private staging folder."""

    def __init__(self, staging: Path, progress: Progress | None) -> None:
        self.staging = staging
        self.progress = progress
        self.received = 0
        self.expected = 0
        self.studies: set[str] = set()
        self.failed: list[str] = []
        self._lock = threading.Lock()

    def handle_store(self, event: Any) -> int:
        try:
            path = instance_path(self.staging, event.dataset)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(event.encoded_dataset())
        except Exception as exc:  # a reply the peer understands beats a dead association
            self.failed.append(f"{type(exc).__name__}: {exc}")
            return 0xA700  # out of resources
        with self._lock:
            self.received += 1
            self.studies.add(path.parent.parent.name)
        if self.progress is not None:
            self.progress(self.received, self.expected)
        return 0x0000


def _safe(uid: Any) -> str:
    text = "".join(c for c in str(uid or "") if c.isalnum() or c in ".-_")
    return text or "unknown"


def instance_path(root: Path, ds: Dataset) -> Path:
    """``<study uid>/<series uid>/<instance uid>.dcm`` under ``root``: UIDs are unique and free of identity."""
    return root / _safe(ds.get("StudyInstanceUID")) / _safe(ds.get("SeriesInstanceUID")) / \
        f"{_safe(ds.get('SOPInstanceUID'))}.dcm"


def publish_into(staging: Path, out_dir: Path) -> list[Path]:
    """Move each study folder of ``staging`` into ``out_dir``: a new study in one rename, files of a study that is
    already there one by one (each ``os.replace`` is atomic, so a reader never sees half a file)."""
    published = []
    for study in sorted(p for p in staging.iterdir() if p.is_dir()):
        target = out_dir / study.name
        try:
            os.rename(study, target)
        except OSError:
            for file in sorted(study.rglob("*")):
                if file.is_file():
                    dest = target / file.relative_to(study)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(file, dest)
            shutil.rmtree(study, ignore_errors=True)
        published.append(target)
    return published


def _retrieve_query(study_uid: str, series_uid: str | None) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
    query.StudyInstanceUID = study_uid
    if series_uid:
        query.SeriesInstanceUID = series_uid
    return query


def _get_contexts() -> tuple[list[Any], list[Any]]:
    contexts = [build_context(sc.StudyRootQueryRetrieveInformationModelGet)]
    for uid in _GET_IMAGE_CLASSES:
        contexts += [build_context(uid, syntaxes) for syntaxes in _GET_IMAGE_SYNTAXES]
    contexts += [build_context(uid, list(UNCOMPRESSED)) for uid in _GET_OTHER_CLASSES]
    roles = [build_role(uid, scp_role=True) for uid in _GET_IMAGE_CLASSES + _GET_OTHER_CLASSES]
    assert len(contexts) <= MAX_CONTEXTS
    return contexts, roles


class _Refused(Exception):
    """The PACS will not do C-GET for us: try C-MOVE."""


def _counts(status: Dataset) -> int:
    return sum(int(status.get(k, 0) or 0) for k in ("NumberOfRemainingSuboperations",
                                                      "NumberOfCompletedSuboperations",
                                                      "NumberOfFailedSuboperations",
                                                      "NumberOfWarningSuboperations"))


def _drive(responses: Iterator[tuple[Dataset, Dataset | None]], assoc: Association, node: Node, receiver: _Receiver,
           what: str, timeout: float) -> None:
    """Follow C-GET/C-MOVE responses to the end; the final one must report no failed sub-operation."""
    since = time.monotonic()
    for status, _identifier in responses:
        if not status or "Status" not in status:
            why = _lost(assoc, timeout, what, since)
            if what == "C-GET" and receiver.received == 0 and why.startswith("aborted"):
                raise _Refused("it ended the association on our C-GET request")  # what Orthanc does when not allowed
            raise _failure(node, f"{why}; retrieved {receiver.received} of "
                                 f"{receiver.expected or '?'} instances; nothing written")
        since = time.monotonic()
        receiver.expected = max(receiver.expected, _counts(status))
        code = status.Status
        if code in (0xFF00, 0xFF01):
            continue
        if code == 0xA801:
            raise _failure(node, f"does not know our AE title '{assoc.ae.ae_title}' as a C-MOVE destination "
                                 "(add it, with this host and --port, to the PACS's modalities)")
        if code in (0x0000, 0xB000):
            return
        if receiver.received == 0 and what == "C-GET":
            raise _Refused(_status_name(code))
        raise _failure(node, f"{what} failed with status {_status_name(code)}; retrieved {receiver.received} of "
                             f"{receiver.expected or '?'} instances; nothing written")


def retrieve(node: Node, study_uid: str, out_dir: str | Path, *, series_uid: str | None = None,
             calling_ae: str = DEFAULT_AE, port: int | None = None, method: str = "auto",
             timeout: float = DEFAULT_TIMEOUT_S, progress: Progress | None = None,
             audit: Audit | None = None) -> RetrieveReport:
    """Bring a study (or one of its series) into ``out_dir/<study uid>/<series uid>/``.

    ``method`` "auto" tries C-GET and falls back to C-MOVE towards a temporary Storage SCP of ours on ``port``
    (the PACS must know ``calling_ae`` at this host and port). Files land in a hidden staging folder inside
    ``out_dir`` and are published only when every instance the PACS announced has arrived.
    """
    if method not in ("auto", "get", "move"):
        raise ValueError(method)
    out_dir = Path(out_dir)
    target = f"{node.address} study {study_uid}" + (f" series {series_uid}" if series_uid else "")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MedscanError(out_dir, f"cannot create the output folder ({exc.strerror or exc})") from None
    staging = out_dir / f".medscan-retrieve-{secrets.token_hex(4)}"
    staging.mkdir()
    receiver = _Receiver(staging, progress)
    started = time.perf_counter()
    used = "C-GET"
    try:
        refused = ""
        if method in ("auto", "get"):
            try:
                _retrieve_get(node, study_uid, series_uid, calling_ae, timeout, receiver)
            except _Refused as why:
                refused = str(why)
                if method == "get":
                    raise _failure(node, f"refuses C-GET ({refused})") from None
        if method == "move" or refused:
            used = "C-MOVE"
            if port is None:
                raise _failure(node, f"refuses C-GET ({refused}); give --port for a C-MOVE to us instead")
            _retrieve_move(node, study_uid, series_uid, calling_ae, port, timeout, receiver)
        if receiver.failed:
            raise _failure(node, f"could not write {len(receiver.failed)} instance(s): {receiver.failed[0]}; "
                                 "nothing written")
        if receiver.expected and receiver.received < receiver.expected:
            raise _failure(node, f"retrieved {receiver.received} of {receiver.expected} instances; nothing written")
        if receiver.received == 0:
            asked = f"series {series_uid}" if series_uid else f"study {study_uid}"
            raise _failure(node, f"has no instances for {asked}")
        publish_into(staging, out_dir)
    except MedscanError as exc:
        _audit(audit, "dicom-retrieve", target, outcome="failed", detail=exc.problem)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    seconds = time.perf_counter() - started
    _audit(audit, "dicom-retrieve", target, detail=f"{used}: {receiver.received} instance(s) in {seconds:.1f} s")
    return RetrieveReport(method=used, received=receiver.received, expected=max(receiver.expected, receiver.received),
                          folder=out_dir / _safe(study_uid), seconds=seconds)


def _retrieve_get(node: Node, study_uid: str, series_uid: str | None, calling_ae: str, timeout: float,
                  receiver: _Receiver) -> None:
    contexts, roles = _get_contexts()
    try:
        assoc = associate(node, calling_ae, contexts, timeout=timeout, roles=roles,
                          handlers=[(evt.EVT_C_STORE, receiver.handle_store)])
    except MedscanError as exc:
        if exc.problem.startswith("refused every presentation context"):
            raise _Refused("no C-GET presentation context accepted") from None
        raise
    try:
        if not any(cx.abstract_syntax == sc.StudyRootQueryRetrieveInformationModelGet
                   for cx in assoc.accepted_contexts):
            raise _Refused("C-GET presentation context refused")
        responses = assoc.send_c_get(_retrieve_query(study_uid, series_uid),
                                     sc.StudyRootQueryRetrieveInformationModelGet)
        _drive(responses, assoc, node, receiver, "C-GET", timeout)
    finally:
        if assoc.is_established:
            assoc.release()


def storage_scp_ae(ae_title: str, timeout: float = DEFAULT_TIMEOUT_S) -> AE:
    """An AE that accepts every storage SOP class in every encoding we can decode, and C-ECHO."""
    from pynetdicom import AllStoragePresentationContexts

    ae = _make_ae(ae_title, timeout)
    ae.network_timeout = max(timeout, 60.0)  # a scanner may pause between series; idle is not an error
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, RECEIVE_SYNTAXES)
    ae.add_supported_context(sc.Verification)
    return ae


def _retrieve_move(node: Node, study_uid: str, series_uid: str | None, calling_ae: str, port: int, timeout: float,
                   receiver: _Receiver) -> None:
    scp_ae = storage_scp_ae(calling_ae, timeout)
    try:
        server = scp_ae.start_server(("", port), block=False, evt_handlers=[(evt.EVT_C_STORE, receiver.handle_store),
                                                                           (evt.EVT_CONN_OPEN, no_delay_handler)])
    except OSError as exc:
        raise MedscanError(f"--port {port}", f"cannot listen for the C-MOVE ({exc.strerror or exc})") from None
    try:
        assoc = associate(node, calling_ae, [build_context(sc.StudyRootQueryRetrieveInformationModelMove)],
                          timeout=timeout)
        try:
            responses = assoc.send_c_move(_retrieve_query(study_uid, series_uid), calling_ae,
                                          sc.StudyRootQueryRetrieveInformationModelMove)
            _drive(responses, assoc, node, receiver, "C-MOVE", timeout)
        finally:
            if assoc.is_established:
                assoc.release()
        # The PACS reports success once it has sent; our SCP may still be writing the last instance.
        deadline = time.monotonic() + timeout
        while receiver.expected and receiver.received < receiver.expected and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.shutdown()


# ---------------------------------------------------------------------------------------------
# C-STORE
# ---------------------------------------------------------------------------------------------
@dataclass
class SendReport:
    """What a send did.

    Attributes:
        sent: instances the node stored.
        total: DICOM files found under the paths.
        transcoded: instances sent in another transfer syntax than their own.
        skipped: files that are not DICOM.
        seconds: wall-clock time.
    """

    sent: int
    total: int
    transcoded: int
    skipped: list[str]  # files that are not DICOM
    seconds: float


@dataclass
class _Outgoing:
    path: str
    sop_class: UID
    syntax: UID


def _scan_files(paths: Iterable[str | Path]) -> tuple[list[_Outgoing], list[str]]:
    """The DICOM files under ``paths`` (headers only); others are listed as skipped with the reason."""
    from medscan.io.dicom import iter_files

    files, skipped = [], []
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise MedscanError(root, "no such file or folder")
        for path in iter_files(root):
            try:
                ds = dcmread(path, stop_before_pixels=True, specific_tags=list(_IDENTITY))
                syntax = UID(str(ds.file_meta.TransferSyntaxUID))
            except (InvalidDicomError, AttributeError, KeyError, OSError, ValueError, EOFError):
                skipped.append(f"{path}: not a DICOM file")
                continue
            missing = [kw for kw in _IDENTITY if not str(ds.get(kw, "") or "").strip()]
            if missing:  # a PACS files instances by these: without them it aborts or mixes studies up
                skipped.append(f"{path}: no {', '.join(missing)}")
                continue
            files.append(_Outgoing(path, UID(str(ds.SOPClassUID)), syntax))
    return files, skipped


_IDENTITY = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def _send_contexts(files: list[_Outgoing]) -> list[list[Any]]:
    """Presentation contexts in groups of at most 128: per SOP class, one per stored encoding (so each file can go
    as it is) and one uncompressed (the fallback, and what transcoding produces)."""
    wanted: dict[UID, set[UID]] = {}
    for f in files:
        wanted.setdefault(f.sop_class, set()).add(f.syntax)
    groups: list[list[Any]] = [[]]
    for sop_class, syntaxes in wanted.items():
        contexts = [build_context(sop_class, [s]) for s in sorted(syntaxes)]
        if not set(UNCOMPRESSED) <= syntaxes:
            contexts.append(build_context(sop_class, list(UNCOMPRESSED)))
        if len(groups[-1]) + len(contexts) > MAX_CONTEXTS:
            groups.append([])
        groups[-1].extend(contexts)
    return [g for g in groups if g]


def send(node: Node, paths: Iterable[str | Path], *, calling_ae: str = DEFAULT_AE,
         timeout: float = DEFAULT_TIMEOUT_S, deidentifier: Any = None, progress: Progress | None = None,
         audit: Audit | None = None) -> SendReport:
    """C-STORE every DICOM file under ``paths``. Each goes in its own transfer syntax when the peer accepts it,
    else decompressed to explicit VR little endian. ``deidentifier`` (a ``medscan.deid.Deidentifier``) sends
    de-identified copies instead; files at risk of burned-in text are then refused. Any failed instance is an
    error that says how many were sent."""
    import pynetdicom._config

    # Files that go as they are stored are streamed from disk, never decoded (see pynetdicom's _config).
    pynetdicom._config.STORE_SEND_CHUNKED_DATASET = True
    paths = list(paths)
    files, skipped = _scan_files(paths)
    label = ", ".join(str(p) for p in paths)[:200]
    if not files:
        raise MedscanError(label, "no DICOM files to send" + (f" ({skipped[0]})" if skipped else ""))
    started = time.perf_counter()
    sent = transcoded = 0
    by_class: dict[UID, list[_Outgoing]] = {}
    for f in files:
        by_class.setdefault(f.sop_class, []).append(f)
    try:
        for contexts in _send_contexts(files):
            classes = {cx.abstract_syntax for cx in contexts}
            batch = [f for f in files if f.sop_class in classes]
            assoc = associate(node, calling_ae, contexts, timeout=timeout)
            try:
                accepted = {(cx.abstract_syntax, ts) for cx in assoc.accepted_contexts for ts in cx.transfer_syntax}
                for item in batch:
                    done = _send_one(assoc, node, item, accepted, deidentifier, timeout, sent, len(files))
                    sent += 1
                    transcoded += done
                    if progress is not None:
                        progress(sent, len(files))
            finally:
                if assoc.is_established:
                    assoc.release()
    except MedscanError as exc:
        problem = exc.problem if exc.path == node.name else str(exc)
        _audit(audit, "dicom-send", node.address, outcome="failed", detail=f"{label}: {problem}")
        raise
    seconds = time.perf_counter() - started
    detail = f"{label}: {sent} instance(s)" + (f", {transcoded} transcoded" if transcoded else "") + \
        (" de-identified" if deidentifier is not None else "")
    _audit(audit, "dicom-send", node.address, detail=detail)
    return SendReport(sent=sent, total=len(files), transcoded=transcoded, skipped=skipped, seconds=seconds)


def _send_one(assoc: Association, node: Node, item: _Outgoing, accepted: set[tuple[UID, UID]], deidentifier: Any,
              timeout: float, sent: int, total: int) -> int:
    """C-STORE one file; returns 1 when it had to be transcoded."""
    as_is = (item.sop_class, item.syntax) in accepted
    plain = [ts for ts in UNCOMPRESSED if (item.sop_class, ts) in accepted]
    if not as_is and not plain:
        raise _failure(node, f"accepts no transfer syntax we can send {item.sop_class.name} in "
                             f"({item.syntax.name}, or uncompressed); sent {sent} of {total} instances")
    payload: Dataset | str = item.path
    changed = 0
    if deidentifier is not None or not as_is:
        ds = dcmread(item.path)
        if deidentifier is not None:
            from medscan.deid import burned_in_risk

            risk = burned_in_risk(ds)
            if risk:
                raise MedscanError(item.path, f"{risk}; not sent de-identified; sent {sent} of {total} instances")
            deidentifier.deidentify(ds)
        if not as_is:
            if item.syntax.is_compressed:
                try:
                    ds.decompress(generate_instance_uid=False)  # same image, same identity
                except Exception as exc:
                    raise MedscanError(item.path, f"cannot decompress {item.syntax.name} for a peer that accepts "
                                                  f"only uncompressed: {exc}") from None
            # else pynetdicom re-encodes an uncompressed dataset into whichever uncompressed syntax was accepted
            changed = 1
        payload = ds
    since = time.monotonic()
    status = assoc.send_c_store(payload)
    if not status or "Status" not in status:
        raise _failure(node, f"{_lost(assoc, timeout, 'C-STORE', since)}; sent {sent} of {total} instances")
    if status.Status not in (0x0000, 0xB000, 0xB006, 0xB007):
        raise _failure(node, f"refused {Path(item.path).name} with status {_status_name(status.Status)}; "
                             f"sent {sent} of {total} instances")
    return changed
