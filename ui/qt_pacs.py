"""File › Query/Retrieve…, File › Send to PACS… and the PACS nodes dialog.

Nodes live in the GUI settings (``pacs/nodes``, a JSON list) beside the other settings; nodes from the command
line's nodes file (``~/.config/medscan/nodes.toml``) are offered too. Every network call runs in the job pool
(``medscan.net``), with progress in the Jobs panel and errors as the same one-line messages the CLI prints.
A retrieved study is opened in the study browser.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QAction
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ui.qt_workers import JobContext

MODALITIES = ("", "CT", "MR", "PT", "US", "CR", "DX", "MG", "NM", "XA", "SEG", "SR")
COLUMNS = ("Date", "Patient ID", "Patient name", "Modalities", "Series", "Images", "Description", "Study UID")


# -- settings -----------------------------------------------------------------------------------------
def load_gui_nodes(settings: Any) -> dict[str, Any]:
    """Nodes from the GUI settings, then those of the nodes file that the settings do not name."""
    from medscan.net.nodes import Node, load_nodes

    nodes: dict[str, Node] = {}
    try:
        raw = json.loads(str(settings.value("pacs/nodes", "[]") or "[]"))
    except ValueError:
        raw = []
    for entry in raw:
        try:
            nodes[entry["name"]] = Node(entry["name"], entry["ae"], entry["host"], int(entry["port"]))
        except (KeyError, TypeError, ValueError):
            continue
    try:
        for name, node in load_nodes().items():
            nodes.setdefault(name, node)
    except Exception:  # a broken nodes file must not stop the GUI; the CLI reports it
        pass
    return nodes


def save_gui_nodes(settings: Any, nodes: dict[str, Any]) -> None:
    settings.setValue("pacs/nodes", json.dumps([{"name": n.name, "ae": n.ae_title, "host": n.host, "port": n.port}
                                                for n in nodes.values()]))


def calling_ae(settings: Any) -> str:
    return str(settings.value("pacs/ae", "MEDSCAN") or "MEDSCAN")


# -- worker jobs (no widgets) ----------------------------------------------------------------------------
def echo_job(ctx: JobContext, node: Any, ae: str) -> float:
    from medscan.net.scu import echo

    ctx.report(0, 0, f"C-ECHO {node.name}")
    return echo(node, calling_ae=ae)


def find_job(ctx: JobContext, node: Any, ae: str, filters: dict[str, str], audit: Any = None) -> list[Any]:
    from medscan.net.scu import find_studies

    ctx.report(0, 0, f"querying {node.name}")
    return find_studies(node, calling_ae=ae, audit=audit, **filters)


def retrieve_job(ctx: JobContext, node: Any, ae: str, study_uid: str, out_dir: str, port: int | None,
                 audit: Any = None) -> Any:
    from medscan.net.scu import retrieve

    def progress(done: int, total: int) -> None:
        ctx.report(done, total, f"retrieved {done} of {total or '?'} instances")

    return retrieve(node, study_uid, out_dir, calling_ae=ae, port=port, progress=progress, audit=audit)


def send_job(ctx: JobContext, node: Any, ae: str, files: list[str] | None, scan: Any, deidentify: bool,
             audit: Any = None) -> Any:
    """Send a series' files, or (``scan``) a kept result written as a derived DICOM series first."""
    from medscan.net.scu import send

    deidentifier = None
    if deidentify:
        import os
        import secrets

        from medscan.deid import Deidentifier

        key = os.environ.get("MEDSCAN_DEID_KEY")
        deidentifier = Deidentifier(key.encode().ljust(16, b"\0") if key else secrets.token_bytes(32))

    def progress(done: int, total: int) -> None:
        ctx.report(done, total, f"sent {done} of {total}")

    if scan is None:
        return send(node, files or [], calling_ae=ae, progress=progress, deidentifier=deidentifier, audit=audit)
    from medscan.io.result_files import save_result

    with tempfile.TemporaryDirectory(prefix="medscan-send-") as tmp:
        ctx.report(0, 0, "writing the derived series")
        folder = save_result(scan, {}, Path(tmp) / "series")[0]
        return send(node, [folder], calling_ae=ae, progress=progress, deidentifier=deidentifier, audit=audit)


def _audit_of(window: Any) -> Any:
    """The study database's audit, when the window has one open and signed in."""
    session = getattr(getattr(window, "database", None), "session", None)
    return session.database.audit if session is not None else None


# -- dialogs ---------------------------------------------------------------------------------------------
class NodesDialog(QDialog):
    """Add, edit, remove and echo PACS nodes; OK stores them in the settings."""

    def __init__(self, window: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent or window)
        self.window_ = window
        self.setWindowTitle("PACS nodes")
        self.table = QTableWidget(0, 4)
        self.table.setObjectName("nodesTable")
        self.table.setHorizontalHeaderLabels(["Name", "AE title", "Host", "Port"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        for node in load_gui_nodes(window.settings).values():
            self.add_row(node.name, node.ae_title, node.host, node.port)
        self.ourAe = QLineEdit(calling_ae(window.settings))
        self.ourAe.setObjectName("ourAeEdit")
        self.movePort = QSpinBox()
        self.movePort.setObjectName("movePortSpin")
        self.movePort.setRange(0, 65535)
        self.movePort.setValue(int(window.settings.value("pacs/move_port", 0) or 0))
        self.movePort.setSpecialValueText("C-GET only")
        self.movePort.setToolTip("our port for a C-MOVE when a PACS refuses C-GET (the PACS must know our AE here)")
        add, remove, echo = QPushButton("Add"), QPushButton("Remove"), QPushButton("Echo")
        add.clicked.connect(lambda: self.add_row("new", "PACS", "127.0.0.1", 104))
        remove.clicked.connect(lambda: self.table.removeRow(self.table.currentRow()))
        echo.clicked.connect(self.echo_current)
        self.status = QLabel("")
        self.status.setObjectName("nodesStatus")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        for button in (add, remove, echo):
            row.addWidget(button)
        row.addStretch(1)
        form = QFormLayout()
        form.addRow("Our AE title", self.ourAe)
        form.addRow("Port for C-MOVE", self.movePort)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(row)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        self.resize(560, 320)

    def add_row(self, name: str, ae: str, host: str, port: int) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        for column, value in enumerate((name, ae, host, str(port))):
            self.table.setItem(row, column, QTableWidgetItem(value))

    def nodes(self) -> dict[str, Any]:
        """The table as nodes; a bad row is a one-line error naming it."""
        from medscan.net.nodes import Node, check_ae_title
        from medscan.scan import MedscanError

        nodes = {}
        for row in range(self.table.rowCount()):
            name, ae, host, port = (self.table.item(row, c).text().strip() if self.table.item(row, c) else ""
                                    for c in range(4))
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise MedscanError(name or f"row {row + 1}", "port must be a number from 1 to 65535")
            if not name or not host:
                raise MedscanError(f"row {row + 1}", "a node needs a name and a host")
            nodes[name] = Node(name, check_ae_title(ae), host, int(port))
        return nodes

    def echo_current(self) -> None:
        from medscan.scan import MedscanError

        try:
            nodes = list(self.nodes().values())
        except MedscanError as exc:
            self.status.setText(str(exc))
            return
        if not nodes:
            return
        node = nodes[max(self.table.currentRow(), 0)]
        self.status.setText(f"C-ECHO {node.address} …")
        job = self.window_.jobs.run(f"C-ECHO {node.name}", echo_job, node, self.ourAe.text().strip() or "MEDSCAN",
                                    kind="pacs")
        job.succeeded.connect(lambda s: self.status.setText(f"{node.name}: C-ECHO ok ({s * 1000:.0f} ms)"))
        job.failed.connect(self.status.setText)

    def accept(self) -> None:
        from medscan.net.nodes import check_ae_title
        from medscan.scan import MedscanError

        try:
            nodes = self.nodes()
            ae = check_ae_title(self.ourAe.text() or "MEDSCAN")
        except MedscanError as exc:
            self.status.setText(str(exc))
            return
        save_gui_nodes(self.window_.settings, nodes)
        self.window_.settings.setValue("pacs/ae", ae)
        self.window_.settings.setValue("pacs/move_port", self.movePort.value())
        super().accept()


class QueryRetrieveDialog(QDialog):
    """Pick a node, search studies, retrieve the chosen one into the study browser."""

    searched = pyqtSignal(list)  # the StudyMatch list shown
    retrieved = pyqtSignal(object)  # RetrieveReport

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window_ = window
        self.setWindowTitle("Query/Retrieve")
        self.studies: list[Any] = []
        self.nodeCombo = QComboBox()
        self.nodeCombo.setObjectName("nodeCombo")
        self.nodeCombo.setMinimumWidth(260)
        manage = QPushButton("Nodes…")
        manage.clicked.connect(self.manage_nodes)
        self.patientId, self.patientName, self.accession = QLineEdit(), QLineEdit(), QLineEdit()
        self.dateFrom, self.dateTo = QLineEdit(), QLineEdit()
        for edit, name, hint in ((self.patientId, "patientIdEdit", ""), (self.patientName, "patientNameEdit",
                                                                          "DOE^* (wildcards)"),
                                 (self.accession, "accessionEdit", ""), (self.dateFrom, "dateFromEdit", "YYYYMMDD"),
                                 (self.dateTo, "dateToEdit", "YYYYMMDD")):
            edit.setObjectName(name)
            edit.setPlaceholderText(hint)
            edit.returnPressed.connect(self.search)
        self.modality = QComboBox()
        self.modality.setObjectName("modalityCombo")
        self.modality.addItems([m or "any" for m in MODALITIES])
        self.searchButton = QPushButton("Search")
        self.searchButton.setObjectName("searchButton")
        self.searchButton.setDefault(True)
        self.searchButton.clicked.connect(self.search)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("studyTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COLUMNS.index("Description"), QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(COLUMNS.index("Study UID"), QHeaderView.ResizeMode.Interactive)
        header.resizeSection(COLUMNS.index("Study UID"), 230)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.itemSelectionChanged.connect(self._update_enabled)
        self.table.itemDoubleClicked.connect(lambda _item: self.retrieve())
        self.outDir = QLineEdit(str(window.settings.value("pacs/retrieve_dir", "") or
                                    Path.home() / "medscan-retrieved"))
        self.outDir.setObjectName("outDirEdit")
        browse = QPushButton("…")
        browse.setMaximumWidth(32)
        browse.clicked.connect(self._browse)
        self.retrieveButton = QPushButton("Retrieve")
        self.retrieveButton.setObjectName("retrieveButton")
        self.retrieveButton.clicked.connect(self.retrieve)
        self.progress = QProgressBar()
        self.progress.setObjectName("retrieveProgress")
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.status = QLabel("")
        self.status.setObjectName("qrStatus")
        self.status.setWordWrap(True)

        top = QHBoxLayout()
        top.addWidget(QLabel("PACS"))
        top.addWidget(self.nodeCombo, 1)
        top.addWidget(manage)
        fields = QGridLayout()
        for i, (label, widget) in enumerate((("Patient ID", self.patientId), ("Patient name", self.patientName),
                                             ("Accession", self.accession), ("Modality", self.modality),
                                             ("Study date from", self.dateFrom), ("to", self.dateTo))):
            fields.addWidget(QLabel(label), i // 3, (i % 3) * 2)
            fields.addWidget(widget, i // 3, (i % 3) * 2 + 1)
        fields.addWidget(self.searchButton, 1, 6)
        bottom = QHBoxLayout()
        bottom.addWidget(QLabel("Into"))
        bottom.addWidget(self.outDir, 1)
        bottom.addWidget(browse)
        bottom.addWidget(self.progress, 1)
        bottom.addWidget(self.retrieveButton)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(fields)
        layout.addWidget(self.table, 1)
        layout.addLayout(bottom)
        layout.addWidget(self.status)
        self.resize(980, 520)
        self.refresh_nodes()
        self._update_enabled()

    # -- nodes ------------------------------------------------------------------------------------------
    def refresh_nodes(self) -> None:
        current = self.nodeCombo.currentText()
        self.nodes = load_gui_nodes(self.window_.settings)
        self.nodeCombo.clear()
        for name, node in self.nodes.items():
            self.nodeCombo.addItem(name, node)
            self.nodeCombo.setItemData(self.nodeCombo.count() - 1, node.address, Qt.ItemDataRole.ToolTipRole)
        if current in self.nodes:
            self.nodeCombo.setCurrentText(current)
        self._update_enabled()

    def manage_nodes(self) -> None:
        if NodesDialog(self.window_, self).exec():
            self.refresh_nodes()

    def node(self) -> Any:
        return self.nodeCombo.currentData()

    # -- search ------------------------------------------------------------------------------------------
    def filters(self) -> dict[str, str]:
        date_from, date_to = self.dateFrom.text().strip(), self.dateTo.text().strip()
        date = f"{date_from}-{date_to}" if (date_from or date_to) and date_from != date_to else date_from
        modality = self.modality.currentText()
        return {"patient_id": self.patientId.text().strip(), "patient_name": self.patientName.text().strip(),
                "accession": self.accession.text().strip(), "study_date": date,
                "modality": "" if modality == "any" else modality}

    def search(self) -> None:
        node = self.node()
        if node is None:
            self.status.setText("Add a PACS node first (Nodes…).")
            return
        self.status.setText(f"Searching {node.name} …")
        self.searchButton.setEnabled(False)
        job = self.window_.jobs.run(f"Query {node.name}", find_job, node, calling_ae(self.window_.settings),
                                    self.filters(), _audit_of(self.window_), kind="pacs")
        job.succeeded.connect(self.show_studies)
        job.failed.connect(self._failed)
        job.finished.connect(self._update_enabled)

    def show_studies(self, studies: list[Any]) -> None:
        self.studies = sorted(studies, key=lambda s: (s.study_date, s.patient_id), reverse=True)
        self.table.setRowCount(len(self.studies))
        for row, s in enumerate(self.studies):
            date = f"{s.study_date[:4]}-{s.study_date[4:6]}-{s.study_date[6:]}" if len(s.study_date) == 8 else \
                s.study_date
            values = (date, s.patient_id, s.patient_name.replace("^", " ").strip(), "/".join(s.modalities),
                      "" if s.series_count is None else str(s.series_count),
                      "" if s.instances is None else str(s.instances), s.description, s.study_uid)
            for column, value in enumerate(values):
                item = QTableWidgetItem(value)
                if column in (4, 5):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, item)
        if self.studies:
            self.table.selectRow(0)
        self.status.setText(f"{len(self.studies)} study(ies) on {self.node().name}" if self.node() else "")
        self.searched.emit(self.studies)

    # -- retrieve ----------------------------------------------------------------------------------------
    def retrieve(self) -> None:
        row = self.table.currentRow()
        node = self.node()
        if node is None or not 0 <= row < len(self.studies):
            return
        study = self.studies[row]
        out_dir = self.outDir.text().strip()
        self.window_.settings.setValue("pacs/retrieve_dir", out_dir)
        port = int(self.window_.settings.value("pacs/move_port", 0) or 0) or None
        self.retrieveButton.setEnabled(False)
        self.progress.setRange(0, max(study.instances or 0, 1))
        self.progress.setValue(0)
        self.progress.setFormat("%v of %m")
        self.status.setText(f"Retrieving {study.description or study.study_uid} from {node.name} …")
        job = self.window_.jobs.run(f"Retrieve {study.description or study.study_uid}", retrieve_job, node,
                                    calling_ae(self.window_.settings), study.study_uid, out_dir, port,
                                    _audit_of(self.window_), kind="pacs")
        job.progressed.connect(self._progressed)
        job.succeeded.connect(self._retrieved)
        job.failed.connect(self._failed)
        job.finished.connect(self._update_enabled)

    def _progressed(self, done: int, total: int, _text: str) -> None:
        if total:
            self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _retrieved(self, report: Any) -> None:
        self.progress.setRange(0, max(report.expected, 1))
        self.progress.setValue(report.received)
        self.status.setText(f"Retrieved {report.received} of {report.expected} instances by {report.method} in "
                            f"{report.seconds:.1f} s → {report.folder}")
        self.retrieved.emit(report)
        self.window_.open_path(report.folder)

    def _failed(self, message: str) -> None:
        self.status.setText(message)
        self.window_.report_error("PACS", message)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Retrieve into", self.outDir.text())
        if folder:
            self.outDir.setText(folder)

    def _update_enabled(self) -> None:
        busy = any(job.kind == "pacs" and not job.ended for job in getattr(self.window_.jobs, "_active", []))
        self.searchButton.setEnabled(self.node() is not None and not busy)
        self.retrieveButton.setEnabled(self.table.currentRow() >= 0 and bool(self.studies) and not busy)


class SendDialog(QDialog):
    """Choose the node (and de-identification) for File › Send to PACS…."""

    def __init__(self, window: Any, what: str) -> None:
        super().__init__(window)
        self.setWindowTitle("Send to PACS")
        self.nodes = load_gui_nodes(window.settings)
        self.nodeCombo = QComboBox()
        self.nodeCombo.setObjectName("sendNodeCombo")
        for name, node in self.nodes.items():
            self.nodeCombo.addItem(name, node)
        self.deidentify = QCheckBox("De-identify (PS3.15 Annex E basic profile) for a research node")
        self.deidentify.setObjectName("deidentifyCheck")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Send")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Send {what} to:"))
        layout.addWidget(self.nodeCombo)
        layout.addWidget(self.deidentify)
        layout.addWidget(buttons)


def send_current(window: Any, dialog: SendDialog | None = None) -> Any:
    """Send the shown series (its files) or the kept result shown (as a derived DICOM series); returns the job."""
    if window.scan is None:
        window.report_error("Send to PACS", "open a series (or show a kept result) first")
        return None
    result = bool(getattr(window, "showing_result", False))
    record = getattr(window.current, "record", None) if window.current is not None else None
    if not result and record is None:
        window.report_error("Send to PACS", "this series was opened from a NIfTI file: there are no DICOM files to "
                                            "send (export it as DICOM first)")
        return None
    what = "this result (as a derived series)" if result else f"{window.scan.modality} series " \
                                                              f"{window.current.title if window.current else ''}"
    dialog = dialog or SendDialog(window, what)
    if dialog.nodeCombo.count() == 0:
        window.report_error("Send to PACS", "no PACS node yet: add one under File › Query/Retrieve… › Nodes…")
        return None
    if not dialog.isVisible() and not dialog.exec():
        return None
    node = dialog.nodeCombo.currentData()
    job = window.jobs.run(f"Send to {node.name}", send_job, node, calling_ae(window.settings),
                          None if result else list(record.files), window.scan if result else None,
                          dialog.deidentify.isChecked(), _audit_of(window), kind="pacs")
    job.succeeded.connect(lambda r: window.statusbar.showMessage(
        f"sent {r.sent} of {r.total} instances to {node.name} in {r.seconds:.1f} s", 10000))
    job.failed.connect(lambda message: window.report_error("Send to PACS", message))
    return job


def install(window: Any) -> tuple[QAction, QAction]:
    """File › Query/Retrieve… and File › Send to PACS…, above the Export menu."""
    query = QAction("&Query/Retrieve…", window)
    query.setObjectName("actionQueryRetrieve")
    query.setShortcut("Ctrl+Shift+Q")
    query.setToolTip("Search a PACS and retrieve a study into the study browser")
    send = QAction("Send to &PACS…", window)
    send.setObjectName("actionSendToPacs")
    send.setToolTip("C-STORE the shown series, or the kept result, to a PACS node")

    def open_dialog() -> None:
        dialog = getattr(window, "query_retrieve_dialog", None)
        if dialog is None:
            dialog = window.query_retrieve_dialog = QueryRetrieveDialog(window)
        dialog.refresh_nodes()
        dialog.show()
        dialog.raise_()

    query.triggered.connect(open_dialog)
    send.triggered.connect(lambda: send_current(window))
    menu = getattr(window, "menuFile", None)
    if menu is not None:
        before = window.menuExport.menuAction() if hasattr(window, "menuExport") else None
        menu.insertActions(before, [query, send])
        menu.insertSeparator(before)
    return query, send
