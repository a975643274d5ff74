"""``medscan listen``: a Storage SCP that files what it receives by study, for peers on an allow-list.

Instances are written to a hidden ``.incoming`` folder inside the output folder; a study is published (renamed to
``OUT/<study uid>/<series uid>/<instance uid>.dcm``) once no instance of it has arrived for ``quiet_s`` seconds, and
then handed to ``on_study`` (the ``--run``/``--forward`` pipeline), one study at a time, in a worker thread.
Associations from peers not on the allow-list are rejected (calling AE not recognised), logged and audited.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pynetdicom import evt

from medscan.net.nodes import check_ae_title
from medscan.net.scu import (
    DEFAULT_TIMEOUT_S,
    Audit,
    instance_path,
    no_delay_handler,
    publish_into,
    storage_scp_ae,
)
from medscan.scan import MedscanError

INCOMING = ".incoming"
StudyCallback = Callable[[Path, "StudyArrival"], None]


@dataclass(frozen=True)
class AllowRule:
    """``AE@host``; ``*`` for either part means any. ``addresses`` are the host's resolved IPs."""

    text: str
    ae_title: str | None
    addresses: frozenset[str] | None

    def matches(self, ae_title: str, address: str) -> bool:
        """True when a caller with this AE title and IP address is admitted by the rule (``None`` parts match any)."""
        return (self.ae_title is None or self.ae_title == ae_title) and \
            (self.addresses is None or _normal_ip(address) in self.addresses)


def _normal_ip(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def parse_allow(entries: list[str]) -> list[AllowRule]:
    """``AE@host``, ``*@host`` (any AE from that host) or ``AE@*`` (that AE from anywhere)."""
    rules = []
    for entry in entries:
        ae, sep, host = entry.strip().partition("@")
        if not sep or not ae or not host:
            raise MedscanError(entry, "an --allow entry is AE@host, *@host or AE@* ")
        title = None if ae == "*" else check_ae_title(ae, "AE title in --allow")
        if host == "*":
            addresses = None
        else:
            try:
                addresses = frozenset(_normal_ip(info[4][0]) for info in socket.getaddrinfo(host, None))
            except socket.gaierror:
                raise MedscanError(entry, f"unknown host '{host}'") from None
        rules.append(AllowRule(entry, title, addresses))
    return rules


def is_allowed(rules: list[AllowRule] | None, ae_title: str, address: str) -> bool:
    """No rules: loopback peers only."""
    if not rules:
        try:
            return ipaddress.ip_address(_normal_ip(address)).is_loopback
        except ValueError:
            return False
    return any(rule.matches(ae_title, address) for rule in rules)


def server_ssl_context(cert: str | None, key: str | None, ca: str | None) -> ssl.SSLContext | None:
    """TLS for the listener: our certificate and key; with ``ca``, peers must present a certificate it signed."""
    if not cert and not key and not ca:
        return None
    if not cert or not key:
        raise MedscanError("--tls-cert/--tls-key", "TLS needs both a certificate and its key")
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        if ca:
            context.load_verify_locations(cafile=ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise MedscanError(cert, f"cannot set up TLS: {exc}") from None
    return context


@dataclass
class StudyArrival:
    """What the listener knows of a study while it arrives."""

    study_uid: str
    senders: set[str] = field(default_factory=set)
    instances: int = 0
    last: float = 0.0


class Listener:
    """Storage SCP; ``start()`` returns at once, ``serve_forever()`` blocks until ``stop()`` or Ctrl-C."""

    def __init__(self, out_dir: str | Path, *, ae_title: str = "MEDSCAN", port: int = 11112, bind: str = "",
                 allow: list[AllowRule] | None = None, ssl_context: ssl.SSLContext | None = None,
                 quiet_s: float = 10.0, on_study: StudyCallback | None = None, audit: Audit | None = None,
                 log: Callable[[str], None] = print, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.out_dir = Path(out_dir)
        self.ae_title = check_ae_title(ae_title)
        self.port, self.bind, self.allow, self.ssl_context = port, bind, allow, ssl_context
        self.quiet_s, self.on_study, self.audit, self.log, self.timeout = quiet_s, on_study, audit, log, timeout
        self.incoming = self.out_dir / INCOMING
        self.pending: dict[str, StudyArrival] = {}
        self.published: list[Path] = []
        self.received = 0
        self.refused = 0
        self._lock = threading.Lock()
        self._audit_lock = threading.Lock()  # one database connection, many association threads
        self._stop = threading.Event()
        self._server: Any = None
        self._worker: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the output folders, recover studies a previous run left half-published, and start listening
        (in the background) plus the thread that publishes completed studies.

        Raises:
            MedscanError: the folder cannot be created or the port cannot be opened.
        """
        try:
            self.incoming.mkdir(parents=True, exist_ok=True)
            (self.incoming / ".tmp").mkdir(exist_ok=True)
        except OSError as exc:
            raise MedscanError(self.out_dir, f"cannot create the output folder ({exc.strerror or exc})") from None
        self._recover()
        ae = storage_scp_ae(self.ae_title, self.timeout)
        handlers = [(evt.EVT_REQUESTED, self._on_requested), (evt.EVT_C_STORE, self._on_store),
                    (evt.EVT_ABORTED, self._on_aborted), (evt.EVT_CONN_OPEN, no_delay_handler)]
        try:
            self._server = ae.start_server((self.bind, self.port), block=False, evt_handlers=handlers,
                                           ssl_context=self.ssl_context)
        except OSError as exc:
            raise MedscanError(f"port {self.port}", f"cannot listen ({exc.strerror or exc})") from None
        self.port = self._server.server_address[1]
        self._worker = threading.Thread(target=self._publish_loop, name="medscan-listen-publish", daemon=True)
        self._worker.start()

    def serve_forever(self) -> None:
        """Start if needed and block until :meth:`stop` is called (from a signal handler or another thread); then
        stop, publishing what has arrived.
        """
        if self._server is None:
            self.start()
        try:
            while not self._stop.wait(0.5):
                pass
        finally:
            self.stop()

    def stop(self, *, flush: bool = True) -> None:
        """Stop accepting; with ``flush`` publish (and process) what has arrived instead of waiting for quiet."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join()
            self._worker = None
        if flush:
            for study in list(self.pending):
                self._publish(study)

    def _recover(self) -> None:
        """Studies left in .incoming by a listener that was killed are published now, not lost."""
        for folder in sorted(p for p in self.incoming.iterdir() if p.is_dir() and not p.name.startswith(".")):
            self.pending[folder.name] = StudyArrival(folder.name, {"(before restart)"},
                                                     sum(1 for _ in folder.rglob("*.dcm")), 0.0)
        shutil.rmtree(self.incoming / ".tmp", ignore_errors=True)
        (self.incoming / ".tmp").mkdir(exist_ok=True)

    # -- association events -------------------------------------------------------------------------
    def _peer(self, event: Any) -> tuple[str, str]:
        requestor = event.assoc.requestor
        title = requestor.ae_title or (requestor.primitive.calling_ae_title if requestor.primitive else "")
        return str(title).strip(), str(requestor.address)

    def _on_requested(self, event: Any) -> None:
        title, address = self._peer(event)
        if is_allowed(self.allow, title, address):
            return
        assoc = event.assoc
        assoc.acse.send_reject(0x01, 0x01, 0x03)  # rejected-permanent, service user, calling AE not recognised
        assoc.is_rejected = True
        assoc.kill()
        self.refused += 1
        self.log(f"medscan: listen: refused association from {title}@{address} (not in --allow)")
        self._audit("dicom-receive", f"{title}@{address}", outcome="refused", detail="not on the allow-list")

    def _on_aborted(self, event: Any) -> None:
        title, address = self._peer(event)
        self.log(f"medscan: listen: {title}@{address} aborted the association; what it sent so far is kept")

    def _on_store(self, event: Any) -> int:
        title, address = self._peer(event)
        try:
            ds = event.dataset
            final = instance_path(self.incoming, ds)
            tmp = self.incoming / ".tmp" / f"{secrets.token_hex(8)}.part"
            with open(tmp, "wb") as fh:
                fh.write(event.encoded_dataset())
        except Exception as exc:  # an undecodable header or a full disk: the peer gets a failure status
            self.log(f"medscan: listen: cannot store an instance from {title}@{address}: {type(exc).__name__}: {exc}")
            return 0xA700
        study = final.parent.parent.name
        with self._lock:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            arrival = self.pending.setdefault(study, StudyArrival(study))
            arrival.senders.add(f"{title}@{address}")
            arrival.instances += 1
            arrival.last = time.monotonic()
            self.received += 1
        return 0x0000

    # -- publishing -----------------------------------------------------------------------------------
    def _publish_loop(self) -> None:
        while not self._stop.wait(min(0.2, self.quiet_s / 4 or 0.2)):
            now = time.monotonic()
            with self._lock:
                due = [uid for uid, a in self.pending.items() if now - a.last >= self.quiet_s]
            for study in due:
                self._publish(study)

    def _publish(self, study: str) -> None:
        with self._lock:
            arrival = self.pending.pop(study, None)
            if arrival is None:
                return
            moving = self.incoming / f".publishing-{secrets.token_hex(4)}"
            moving.mkdir()
            os.rename(self.incoming / study, moving / study)  # arrivals from now on start a new folder
        try:
            [folder] = publish_into(moving, self.out_dir)
        finally:
            shutil.rmtree(moving, ignore_errors=True)
        self.published.append(folder)
        senders = ", ".join(sorted(arrival.senders))
        self.log(f"received study {study}: {arrival.instances} instance(s) from {senders} -> {folder}")
        self._audit("dicom-receive", senders, detail=f"study {study}: {arrival.instances} instance(s) -> {folder}")
        if self.on_study is not None:
            try:
                self.on_study(folder, arrival)
            except MedscanError as exc:
                self.log(f"medscan: {exc}")
            except Exception as exc:  # one bad study must not stop the node
                self.log(f"medscan: {folder}: unexpected {type(exc).__name__}: {exc}")

    def _audit(self, action: str, target: str, **kwargs: Any) -> None:
        if self.audit is not None:
            with self._audit_lock:
                self.audit(action, target, **kwargs)
