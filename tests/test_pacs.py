"""medscan as a DICOM node, against a real Orthanc (tests/conftest.py starts it) and dcmtk's storescu/echoscu.

Series used: ../shared/data train/ct01 (20-slice Siemens CT, JPEG 2000; its UIDs were stripped upstream, so the
test restores them from the file meta), train/mr03 (35-slice MR, explicit VR little endian), the first 8 slices of
mr03 re-encoded as JPEG-LS, and conformance/dcm_qa_ts (one MR image in nine transfer syntaxes). They hold three
patients.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, generate_uid

from medscan.cli import main
from medscan.net import scu
from medscan.net.nodes import Node, load_nodes, parse_node, save_nodes
from medscan.net.scp import Listener, is_allowed, parse_allow
from medscan.resources import shared_data_dir
from medscan.scan import MedscanError


@pytest.fixture(scope="session")
def dcmtk(load_script) -> dict[str, str]:
    """dcmtk's own storescu and echoscu, found as ``scripts/benchmark_pacs.py`` finds them (not pynetdicom's Python
    apps of the same names, which an activated venv puts first on PATH)."""
    bench = load_script("benchmark_pacs")
    return {tool: bench.dcmtk(tool) for tool in ("storescu", "echoscu")}


DATA = shared_data_dir()
CT01 = DATA / "train" / "ct01_upper_abdomen_siemens_dicom"
MR03 = DATA / "train" / "mr03_brain_t1_2d_sag_siemens_dicom"
TS = DATA / "conformance" / "dcm_qa_ts" / "In"
UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
ROOT = Path(__file__).resolve().parents[1]

if not CT01.is_dir() or not MR03.is_dir():
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise RuntimeError(f"test scans not found under {DATA} (MEDSCAN_DATA)")
    pytest.skip(f"test scans not found under {DATA}", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> dict[str, Path]:
    """{"ct_j2k": 20 CT files in JPEG 2000, "mr": 35 MR explicit LE, "mr_jls": 8 MR in JPEG-LS, "ts": 9 files}."""
    root = tmp_path_factory.mktemp("series")
    ct = root / "ct_j2k"
    ct.mkdir()
    study, series_uid = generate_uid(), generate_uid()
    for path in sorted(CT01.iterdir()):
        ds = dcmread(path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID = study, series_uid, "CT01"
        ds.save_as(ct / path.name)
    jls = root / "mr_jls"
    jls.mkdir()
    study, series_uid = generate_uid(), generate_uid()
    for path in sorted(MR03.iterdir())[:8]:
        ds = dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID = study, series_uid, "MR03JLS"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.compress(JPEGLSLossless)
        ds.save_as(jls / path.name)
    return {"ct_j2k": ct, "mr": MR03, "mr_jls": jls, "ts": TS}


def _pixels_by_uid(folder: Path) -> dict[str, tuple[str, np.ndarray]]:
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        ds = dcmread(path)
        out[str(ds.SOPInstanceUID)] = (str(ds.file_meta.TransferSyntaxUID), ds.pixel_array)
    return out


def _study_uid(folder: Path) -> str:
    return str(dcmread(next(p for p in sorted(folder.iterdir()) if p.is_file()), stop_before_pixels=True)
               .StudyInstanceUID)


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------------------------
def test_nodes_file_round_trip_and_address_parsing(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSCAN_NODES", str(tmp_path / "nodes.toml"))
    assert parse_node("ORTHANC@10.1.2.3:4242") == Node("ORTHANC@10.1.2.3:4242", "ORTHANC", "10.1.2.3", 4242)
    assert parse_node("PACS@[::1]:104").host == "::1"
    save_nodes({"main pacs": Node("main pacs", "PACS1", "pacs.example.org", 11112, tls_ca="/etc/ca.pem")})
    assert load_nodes() == {"main pacs": Node("main pacs", "PACS1", "pacs.example.org", 11112, tls_ca="/etc/ca.pem")}
    assert parse_node("main pacs").address == "PACS1@pacs.example.org:11112"
    with pytest.raises(MedscanError, match=r"not AE@host:port and not a node in .*known: main pacs"):
        parse_node("other")
    with pytest.raises(MedscanError, match="not a valid AE title"):
        parse_node("BAD\\AE@host:104")
    (tmp_path / "nodes.toml").write_text("[nodes.x]\nae = 'A'\nhost = 'h'\nport = 'no'\n")
    with pytest.raises(MedscanError, match="port must be an integer"):
        parse_node("x")


def test_allow_list_defaults_to_loopback_only():
    assert is_allowed(None, "ANY", "127.0.0.1") and is_allowed(None, "ANY", "::1")
    assert not is_allowed(None, "ANY", "10.0.0.7")
    rules = parse_allow(["CT1@127.0.0.1", "*@10.0.0.9"])
    assert is_allowed(rules, "CT1", "127.0.0.1") and not is_allowed(rules, "CT2", "127.0.0.1")
    assert is_allowed(rules, "WHOEVER", "10.0.0.9") and not is_allowed(rules, "CT1", "10.0.0.8")
    with pytest.raises(MedscanError, match="AE@host"):
        parse_allow(["CT1"])


# ---------------------------------------------------------------------------------------------
# Against Orthanc
# ---------------------------------------------------------------------------------------------
def test_send_find_get_round_trip_with_orthanc(orthanc, series, capsys, tmp_path):
    code, out, err = _cli(capsys, "pacs", "echo", "--pacs", orthanc.node)
    assert code == 0 and "C-ECHO ok" in out, err

    sources = [series["ct_j2k"], series["mr"], series["mr_jls"], series["ts"]]
    code, out, err = _cli(capsys, "pacs", "send", *map(str, sources), "--pacs", orthanc.node)
    assert code == 0, err
    assert "sent 72 of 72 instances" in out
    ours = {}
    for folder in sources:
        ours.update(_pixels_by_uid(folder))
    stored = {orthanc.rest(f"/instances/{i}/tags?simplify")["SOPInstanceUID"] for i in orthanc.rest("/instances")}
    assert stored == set(ours)
    # Each went in its own transfer syntax: Orthanc keeps what it received.
    syntaxes = {orthanc.rest(f"/instances/{i}/metadata/TransferSyntax") for i in orthanc.rest("/instances")}
    assert {JPEG2000Lossless, JPEGLSLossless, "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5"} <= syntaxes

    code, out, err = _cli(capsys, "pacs", "find", "--pacs", orthanc.node, "--json")
    assert code == 0, err
    studies = {s["study_uid"]: s for s in map(json.loads, out.splitlines())}
    ct_study = _study_uid(series["ct_j2k"])
    assert set(studies) == {ct_study, _study_uid(series["mr"]), _study_uid(series["mr_jls"]), _study_uid(TS)}
    assert studies[ct_study]["patient_id"] == "CT01" and studies[ct_study]["modalities"] == ["CT"]
    assert studies[ct_study]["series"] == 1 and studies[ct_study]["instances"] == 20
    assert {"study_date", "description"} <= set(studies[ct_study])
    code, out, _ = _cli(capsys, "pacs", "find", "--pacs", orthanc.node, "--modality", "CT", "--json")
    assert [json.loads(line)["study_uid"] for line in out.splitlines()] == [ct_study]

    for name in ("ct_j2k", "mr_jls", "mr", "ts"):
        study = _study_uid(series[name])
        code, out, err = _cli(capsys, "pacs", "get", "--pacs", orthanc.node, "--study", study, "-o", str(tmp_path))
        assert code == 0, err
        expected = len(list(series[name].iterdir()))
        assert f"retrieved {expected} of {expected} instances by C-GET" in out
        back = _pixels_by_uid(tmp_path / study)
        want = {uid: v for uid, v in ours.items() if uid in back}
        assert len(back) == expected == len(want)
        for uid, (syntax, pixels) in back.items():
            if want[uid][0] in UNCOMPRESSED:  # any uncompressed encoding is the same pixels
                assert syntax in UNCOMPRESSED
            else:
                assert syntax == want[uid][0]  # came back as stored, no transcoding either way
            np.testing.assert_array_equal(pixels, want[uid][1])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # staging is gone


def test_send_transcodes_only_for_a_peer_that_accepts_nothing_else(series, tmp_path):
    """A Storage SCP that accepts only uncompressed: JPEG 2000 files are decompressed, pixels unchanged."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage

    received = {}

    def store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        received[str(ds.SOPInstanceUID)] = (str(event.context.transfer_syntax), ds.pixel_array)
        return 0

    ae = AE("PLAIN")
    ae.add_supported_context(CTImageStorage)  # default: implicit/explicit little endian only
    port = _free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, store)])
    try:
        report = scu.send(parse_node(f"PLAIN@127.0.0.1:{port}"), [series["ct_j2k"]])
    finally:
        server.shutdown()
    assert (report.sent, report.transcoded) == (20, 20)
    ours = _pixels_by_uid(series["ct_j2k"])
    assert set(received) == set(ours)
    for uid, (syntax, pixels) in received.items():
        assert syntax in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
        np.testing.assert_array_equal(pixels, ours[uid][1])


def test_c_move_only_pacs(series, capsys, tmp_path):
    from conftest import start_orthanc, stop_orthanc

    server = start_orthanc(allow_get=False)
    try:
        assert scu.send(parse_node(server.node), [series["ct_j2k"]]).sent == 20
        study = _study_uid(series["ct_j2k"])
        code, _, err = _cli(capsys, "pacs", "get", "--pacs", server.node, "--study", study, "-o", str(tmp_path))
        assert code == 1 and err.count("\n") == 1
        assert err.startswith(f"medscan: {server.node}: refuses C-GET") and "--port" in err
        code, out, err = _cli(capsys, "pacs", "get", "--pacs", server.node, "--study", study, "-o", str(tmp_path),
                              "--port", str(server.move_port))
        assert code == 0, err
        assert "retrieved 20 of 20 instances by C-MOVE" in out
        back, ours = _pixels_by_uid(tmp_path / study), _pixels_by_uid(series["ct_j2k"])
        assert set(back) == set(ours)
        for uid, (_syntax, pixels) in back.items():
            np.testing.assert_array_equal(pixels, ours[uid][1])
        # Our AE at a port the PACS does not have for it: the C-MOVE cannot reach us.
        with pytest.raises(MedscanError, match=r"retrieved 0 of 20 instances; nothing written|C-MOVE failed"):
            scu.retrieve(parse_node(server.node), study, tmp_path / "other", port=_free_port(), method="move",
                         timeout=5)
        assert not (tmp_path / "other" / study).exists()
    finally:
        stop_orthanc(server)


def test_audit_in_the_study_database(orthanc, series, capsys, tmp_path, monkeypatch):
    from sqlalchemy import select

    from medscan.db.models import AuditEntry
    from medscan.db.store import Database

    db = tmp_path / "studies.db"
    with Database.create(db, "k", scrypt_n=2**12) as database:
        database.add_user("tech", "technician", "tp")
    monkeypatch.setenv("MEDSCAN_DB_KEY", "k")
    monkeypatch.setenv("MEDSCAN_USER_KEY", "tp")
    common = ["--pacs", orthanc.node, "--db", str(db), "--user", "tech"]
    assert _cli(capsys, "pacs", "send", str(series["mr_jls"]), *common)[0] == 0
    assert _cli(capsys, "pacs", "find", *common)[0] == 0
    code, out, err = _cli(capsys, "pacs", "get", "--study", _study_uid(series["mr_jls"]), "-o", str(tmp_path / "in"),
                          *common)
    assert code == 0 and "imported 1 series" in out, err
    assert _cli(capsys, "pacs", "get", "--study", "1.2.3.4", "-o", str(tmp_path / "in"), *common)[0] == 1
    with Database.open(db, "k") as database, database.transaction() as session:
        rows = [(a.action, a.outcome, a.user_name) for a in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
                if a.action.startswith("dicom-")]
    assert rows == [("dicom-send", "ok", "tech"), ("dicom-query", "ok", "tech"), ("dicom-retrieve", "ok", "tech"),
                    ("dicom-retrieve", "failed", "tech")]


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
def _run_cli(*argv: str, timeout: float = 60) -> tuple[int, str, str, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "medscan", *argv], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return done.returncode, done.stdout, done.stderr, time.perf_counter() - started


def test_unreachable_pacs_is_one_line_fast(tmp_path):
    port = _free_port()  # nothing listens there
    code, out, err, seconds = _run_cli("pacs", "get", "--pacs", f"PACS@127.0.0.1:{port}", "--study", "1.2.3",
                                       "-o", str(tmp_path / "out"))
    assert code == 1 and out == ""
    assert err == f"medscan: PACS@127.0.0.1:{port}: connection refused on port {port} (nothing listening)\n"
    assert seconds < 15
    assert not any((tmp_path / "out").iterdir())
    code, _, err, _ = _run_cli("pacs", "echo", "--pacs", "PACS@no-such-host.invalid:104")
    assert code == 1 and err == "medscan: PACS@no-such-host.invalid:104: unknown host 'no-such-host.invalid'\n"


def test_silent_peer_times_out(tmp_path):
    """A port that accepts TCP but never speaks DICOM: a time-out, not a hang."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        port = sock.getsockname()[1]
        started = time.perf_counter()
        with pytest.raises(MedscanError, match="did not answer the association request within 2 s"):
            scu.echo(parse_node(f"X@127.0.0.1:{port}"), timeout=2)
        assert time.perf_counter() - started < 15


def _aborting_peer(after: int) -> tuple[object, int]:
    """A Storage SCP that aborts the association on instance number ``after`` + 1 (a PACS dying midway)."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

    count = {"n": 0}

    def store(event):
        count["n"] += 1
        if count["n"] > after:
            event.assoc.abort()
            return 0xA700
        return 0

    ae = AE("DYING")
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    port = _free_port()
    return ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, store)]), port


def test_peer_that_aborts_midway(series, capsys):
    server, port = _aborting_peer(after=5)
    try:
        started = time.perf_counter()
        code, _, err = _cli(capsys, "pacs", "send", str(series["mr"]), "--pacs", f"DYING@127.0.0.1:{port}")
        assert time.perf_counter() - started < 15
    finally:
        server.shutdown()
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"medscan: DYING@127.0.0.1:{port}: aborted the association during C-STORE; sent 5 of 35")


_KILLED_PEER = """
import os, signal, sys
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
count = 0
def store(event):
    global count
    count += 1
    if count > 5:
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies mid-association, as a crashed PACS does
    return 0
ae = AE("KILLED")
for cx in AllStoragePresentationContexts:
    ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
print("ready", flush=True)
ae.start_server(("127.0.0.1", int(sys.argv[1])), evt_handlers=[(evt.EVT_C_STORE, store)])
"""


def test_peer_killed_midway(series, capsys):
    port = _free_port()
    peer = subprocess.Popen([sys.executable, "-c", _KILLED_PEER, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        started = time.perf_counter()
        code, _, err = _cli(capsys, "pacs", "send", str(series["mr"]), "--pacs", f"KILLED@127.0.0.1:{port}")
        assert time.perf_counter() - started < 15
    finally:
        peer.kill()
        peer.wait()
    assert peer.returncode == -9
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"medscan: KILLED@127.0.0.1:{port}: aborted the association during C-STORE; sent 5 of 35")


def test_refused_calling_ae_is_one_line(tmp_path, series, dcmtk):
    lines: list[str] = []
    listener = Listener(tmp_path / "in", ae_title="NODE", port=0, allow=parse_allow(["CT1@127.0.0.1"]),
                        log=lines.append)
    listener.start()
    try:
        code, out, err, seconds = _run_cli("pacs", "send", str(series["mr_jls"]), "--pacs",
                                           f"NODE@127.0.0.1:{listener.port}", "--ae", "INTRUDER")
        # dcmtk's storescu is refused the same way, and the refusal is logged.
        done = subprocess.run([dcmtk["storescu"], "-aet", "OTHER", "-aec", "NODE", "127.0.0.1", str(listener.port),
                               str(next(series["mr_jls"].iterdir()))], capture_output=True, text=True, timeout=30)
    finally:
        listener.stop()
    assert code == 1 and out == "" and seconds < 15
    assert err == (f"medscan: NODE@127.0.0.1:{listener.port}: rejected our calling AE title 'INTRUDER' "
                   "(not known to the PACS)\n")
    assert done.returncode != 0 and "Calling AE Title Not Recognized" in done.stdout + done.stderr
    assert listener.refused == 2 and listener.received == 0
    assert lines == [f"medscan: listen: refused association from {ae}@127.0.0.1 (not in --allow)"
                     for ae in ("INTRUDER", "OTHER")]


# ---------------------------------------------------------------------------------------------
# The listener
# ---------------------------------------------------------------------------------------------
def test_listener_files_by_study_from_storescu_and_from_us(series, tmp_path, dcmtk):
    lines: list[str] = []
    done = threading.Event()
    listener = Listener(tmp_path / "in", ae_title="NODE", port=0, quiet_s=1.0, log=lines.append,
                        on_study=lambda folder, arrival: done.set() if len(lines) >= 3 else None)
    listener.start()
    try:
        port = listener.port
        assert subprocess.run([dcmtk["echoscu"], "-aec", "NODE", "127.0.0.1", str(port)], timeout=30).returncode == 0
        # dcmtk's storescu sends the JPEG 2000 CT and the JPEG-LS MR as they are (-xv, -xt: propose that syntax).
        for name, propose in (("ct_j2k", "-xv"), ("mr_jls", "-xt")):
            subprocess.run([dcmtk["storescu"], "-aet", "SCANNER", "-aec", "NODE", propose, "+sd", "127.0.0.1",
                            str(port), str(series[name])], check=True, timeout=60, capture_output=True)
        scu.send(parse_node(f"NODE@127.0.0.1:{port}"), [series["ts"]], calling_ae="MEDSCAN")
        # Nothing is published while instances still arrive: the studies are in the hidden folder.
        assert {p.name for p in (tmp_path / "in").iterdir()} == {".incoming"}
        assert done.wait(30)
    finally:
        listener.stop()
    for name in ("ct_j2k", "mr_jls", "ts"):
        study = tmp_path / "in" / _study_uid(series[name])
        back, ours = _pixels_by_uid(study), _pixels_by_uid(series[name])
        assert set(back) == set(ours)
        for uid, (syntax, pixels) in back.items():
            np.testing.assert_array_equal(pixels, ours[uid][1])
            if name != "ts":
                assert syntax == ours[uid][0]  # stored as sent
    assert listener.received == 20 + 8 + 9
    assert any("from SCANNER@127.0.0.1" in line for line in lines)


def test_listener_keeps_running_after_a_peer_aborts(series, tmp_path):
    from pynetdicom import AE
    from pynetdicom.sop_class import MRImageStorage

    lines: list[str] = []
    listener = Listener(tmp_path / "in", ae_title="NODE", port=0, quiet_s=0.5, log=lines.append)
    listener.start()
    try:
        ae = AE("FLAKY")
        ae.add_requested_context(MRImageStorage)
        assoc = ae.associate("127.0.0.1", listener.port, ae_title="NODE")
        for path in sorted(series["mr"].iterdir())[:3]:
            assert assoc.send_c_store(dcmread(path)).Status == 0
        assoc.abort()
        report = scu.send(parse_node(f"NODE@127.0.0.1:{listener.port}"), [series["mr_jls"]])
        assert report.sent == 8
        deadline = time.monotonic() + 20
        while len(listener.published) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        listener.stop()
    assert any("FLAKY@127.0.0.1 aborted the association" in line for line in lines)
    assert len(list((tmp_path / "in" / _study_uid(series["mr"])).rglob("*.dcm"))) == 3
    assert len(list((tmp_path / "in" / _study_uid(series["mr_jls"])).rglob("*.dcm"))) == 8


def test_listener_over_tls(series, tmp_path):
    """TLS with a CA that must have signed the peer: our SCU (nodes entry with tls_*) gets through."""
    _, ca_cert, key, cert = _certificates(tmp_path)
    listener = Listener(tmp_path / "in", ae_title="NODE", port=0, quiet_s=0.3, log=lambda line: None,
                        ssl_context=__import__("medscan.net.scp", fromlist=["x"]).server_ssl_context(cert, key,
                                                                                                   ca_cert))
    listener.start()
    try:
        node = Node("tls", "NODE", "127.0.0.1", listener.port, tls_ca=ca_cert, tls_cert=cert, tls_key=key)
        assert scu.send(node, [series["mr_jls"]]).sent == 8
        plain = Node("plain", "NODE", "127.0.0.1", listener.port)
        with pytest.raises(MedscanError):
            scu.echo(plain, timeout=3)
    finally:
        listener.stop()
    assert len(list((tmp_path / "in" / _study_uid(series["mr_jls"])).rglob("*.dcm"))) == 8


def _certificates(tmp_path: Path) -> tuple[str, str, str, str]:
    """A throwaway CA and a localhost certificate it signed (PEM files)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def write(name: str, data: bytes) -> str:
        (tmp_path / name).write_bytes(data)
        return str(tmp_path / name)

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "medscan test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    no_pass = serialization.NoEncryption()
    key_format = serialization.PrivateFormat.PKCS8
    return (write("ca.key", ca_key.private_bytes(pem, key_format, no_pass)), write("ca.pem", ca.public_bytes(pem)),
            write("node.key", key.private_bytes(pem, key_format, no_pass)), write("node.pem", cert.public_bytes(pem)))


def test_deidentify_on_send(orthanc, series):
    from medscan.deid import Deidentifier

    report = scu.send(parse_node(orthanc.node), [series["mr_jls"]], deidentifier=Deidentifier(b"k" * 32))
    assert report.sent == 8
    tags = [orthanc.rest(f"/instances/{i}/tags?simplify") for i in orthanc.rest("/instances")]
    ours = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in series["mr_jls"].iterdir()}
    assert len(tags) == 8 and not ours & {t["SOPInstanceUID"] for t in tags}
    assert {t["PatientID"] for t in tags} != {"MR03JLS"} and all(t["PatientID"].startswith("MS") for t in tags)
    assert all(t.get("PatientIdentityRemoved") == "YES" for t in tags)


def test_no_torch_on_the_pacs_path():
    """`medscan pacs` must stay light: a whole command (to a closed port) imports neither torch nor Qt nor MONAI."""
    port = _free_port()
    code = ("import sys; from medscan.cli import main; "
            f"rc = main(['pacs', 'echo', '--pacs', 'X@127.0.0.1:{port}']); "
            "bad = [m for m in ('torch', 'monai', 'PyQt6') if m in sys.modules]; "
            "print(rc, bad, 'pynetdicom' in sys.modules); sys.exit(bool(bad))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "1 [] True", done.stdout + done.stderr


def test_listener_run_denoises_and_forwards_to_orthanc(orthanc, series, tmp_path, monkeypatch, dcmtk):
    """The AI node: a CT study from storescu is denoised by the batch spec and the derived series forwarded."""
    from medscan.db.store import Database

    db = tmp_path / "studies.db"
    with Database.create(db, "k", scrypt_n=2**12) as database:
        database.add_user("node", "technician", "np")
    spec = tmp_path / "node.yaml"
    spec.write_text(f"operation: denoise\noutput: {{folder: {tmp_path / 'derived'}, format: dicom}}\n")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEDSCAN_DB_KEY": "k", "MEDSCAN_USER_KEY": "np"}
    process = subprocess.Popen([sys.executable, "-m", "medscan", "listen", "--port", str(port), "--ae", "NODE",
                                "-o", str(tmp_path / "in"), "--quiet", "1", "--run", str(spec), "--forward",
                                orthanc.node, "--db", str(db), "--user", "node"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        echo = [dcmtk["echoscu"], "-aec", "NODE", "127.0.0.1", str(port)]
        while subprocess.run(echo, capture_output=True).returncode:
            assert process.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.3)
        started = time.perf_counter()
        subprocess.run([dcmtk["storescu"], "-aec", "NODE", "-xv", "+sd", "127.0.0.1", str(port), str(series["ct_j2k"])],
                       check=True, timeout=60, capture_output=True)
        deadline = time.monotonic() + 240
        while not any("forwarded" in line for line in lines) and time.monotonic() < deadline:
            assert process.poll() is None, "".join(lines)
            time.sleep(0.5)
        seconds = time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=30)
        reader.join(timeout=10)
    output = "".join(lines)
    assert process.returncode == 0 and "stopped: 20 instance(s) received, 1 study(ies) filed" in output, output
    instances = [orthanc.rest(f"/instances/{i}/tags?simplify") for i in orthanc.rest("/instances")]
    assert len(instances) == 20, output
    assert all(t["ImageType"].startswith("DERIVED\\SECONDARY") for t in instances)
    source_uids = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in series["ct_j2k"].iterdir()}
    assert not source_uids & {t["SOPInstanceUID"] for t in instances}
    assert all("denoise" in t.get("DerivationDescription", "").lower() for t in instances), instances[0]
    assert "forwarded 20 instance(s)" in output
    from sqlalchemy import select

    from medscan.db.models import AuditEntry

    with Database.open(db, "k") as database, database.transaction() as session:
        actions = {(a.action, a.outcome) for a in session.scalars(select(AuditEntry))}
    assert {("dicom-receive", "ok"), ("batch", "ok"), ("dicom-send", "ok")} <= actions
    print(f"listen --run: 20-slice CT from storescu to derived series in Orthanc in {seconds:.1f} s")


def test_orthanc_fixture_is_no_silent_skip_in_ci(monkeypatch):
    """CI=true turns a missing Orthanc into a failure with the reason."""
    import conftest

    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(conftest, "Path", lambda p: Path("/nonexistent") / p.lstrip("/"))
    with pytest.raises(pytest.fail.Exception, match="Orthanc cannot start: the Orthanc binary is not installed"):
        conftest.start_orthanc()


@pytest.mark.slow
def test_send_speed_beside_storescu(orthanc, load_script, tmp_path, dcmtk):
    """Issue 24: sending a 275-slice CT takes at most 1.5x dcmtk's storescu, both as whole commands, same run."""
    bench = load_script("benchmark_pacs")
    ratios = []
    for compressed, propose in ((True, ["-xv"]), (False, [])):
        series = bench.make_series(tmp_path / f"ct{compressed}", 275, compressed=compressed)
        best = {}
        for _ in range(2):
            orthanc.clear()
            theirs, done = bench.timed([dcmtk["storescu"], "-aec", "ORTHANC", *propose, "+sd", "127.0.0.1",
                                        str(orthanc.dicom_port), str(series)])
            assert done.returncode == 0, done.stderr
            orthanc.clear()
            ours, done = bench.timed([sys.executable, "-m", "medscan", "pacs", "send", str(series), "--pacs",
                                      orthanc.node], {**os.environ, "OMP_NUM_THREADS": "1"})
            assert done.returncode == 0 and "sent 275 of 275" in done.stdout, done.stderr
            best = {"storescu": min(best.get("storescu", theirs), theirs), "medscan": min(best.get("medscan", ours),
                                                                                          ours)}
        ratios.append(best["medscan"] / best["storescu"])
        print(f"275 {'JPEG 2000' if compressed else 'uncompressed'} slices: storescu {best['storescu']:.2f} s, "
              f"medscan {best['medscan']:.2f} s")
    assert max(ratios) <= 1.5, ratios


def test_partial_retrieve_is_reported_and_nothing_written(series, tmp_path):
    """A PACS that aborts after 3 of the 8 instances it announced: the count is reported and no file is left."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

    files = sorted(series["mr_jls"].iterdir())

    def on_get(event):
        yield len(files)
        for number, path in enumerate(files):
            if number == 3:
                event.assoc.abort()
                return
            yield 0xFF00, dcmread(path)

    ae = AE("HALF")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
    for cx in StoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES, scp_role=True, scu_role=False)
    port = _free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_GET, on_get)])
    try:
        started = time.perf_counter()
        with pytest.raises(MedscanError) as failure:
            scu.retrieve(parse_node(f"HALF@127.0.0.1:{port}"), _study_uid(series["mr_jls"]), tmp_path / "out",
                         method="get")
        assert time.perf_counter() - started < 15
    finally:
        server.shutdown()
    assert failure.value.problem == "aborted the association during C-GET; retrieved 3 of 8 instances; nothing written"
    assert list((tmp_path / "out").iterdir()) == []
