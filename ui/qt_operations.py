"""The Clean and Generate tabs, built from the operation registry (one declaration for CLI, GUI, self-test).

Each :class:`~medscan.ops.Param` becomes a widget by its kind (float -> QDoubleSpinBox, int ->
QSpinBox, choice -> QComboBox, bool -> QCheckBox, str -> QLineEdit, mask -> a brush drawn on the
viewer, see ui/qt_mask_brush.py) with its range and its help as
tooltip, so a new operation needs no GUI code. The panel only asks for work (signals); the main
window runs it in the job pool. Importing the registry is cheap: torch loads when an operation runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ui.qt_results import ResultsPanel

if TYPE_CHECKING:
    from medscan.ops import Operation, Param

DEVICES = (("Auto", "auto"), ("CPU", "cpu"), ("CUDA", "cuda"))
FAMILIES = (("clean", "Clean"), ("generate", "Generate"))
EMPTY_TEXT = {
    "clean": "No Clean operations are installed.",
    "generate": "No Generate operations are installed yet.\n\nGenerative models (super-resolution, synthesis) "
                "appear here when their models ship. Everything they produce is marked SYNTHETIC: in the "
                "results list, on the image, in the window title and in exported file names.",
}
FLOAT_RANGE = 1e9


def _float_decimals(param: Param) -> int:
    """Two decimals for small bounded factors (strength 0-1.5), one for open-ended values such as HU."""
    if param.minimum is None or param.maximum is None:
        return 1
    return 2 if param.maximum - param.minimum <= 10 else 1


def param_widget(param: Param) -> QWidget:
    """A widget for one parameter, set to its default, with its help and range as tooltip."""
    tip = param.help
    if param.kind in ("float", "int"):
        spin: QDoubleSpinBox | QSpinBox
        if param.kind == "float":
            spin = QDoubleSpinBox()
            spin.setDecimals(_float_decimals(param))
            span = (param.maximum or 0) - (param.minimum or 0)
            spin.setSingleStep(0.05 if 0 < span <= 2 else 0.5 if 0 < span <= 20 else 10)
            low = param.minimum if param.minimum is not None else -FLOAT_RANGE
            high = param.maximum if param.maximum is not None else FLOAT_RANGE
            spin.setRange(float(low), float(high))
            spin.setValue(float(param.default))
        else:
            spin = QSpinBox()
            spin.setRange(int(param.minimum) if param.minimum is not None else -2**31 + 1,
                          int(param.maximum) if param.maximum is not None else 2**31 - 1)
            spin.setValue(int(param.default))
        if param.minimum is not None or param.maximum is not None:
            tip += f" (range {param.minimum if param.minimum is not None else '…'}"
            tip += f" to {param.maximum if param.maximum is not None else '…'})"
        widget: QWidget = spin
    elif param.kind == "choice":
        combo = QComboBox()
        combo.addItems(list(param.choices))
        combo.setCurrentText(str(param.default))
        widget = combo
    elif param.kind == "bool":
        check = QCheckBox()
        check.setChecked(bool(param.default))
        widget = check
    elif param.kind == "str":
        widget = QLineEdit(str(param.default))
    elif param.kind == "mask":
        from ui.qt_mask_brush import MaskParamWidget

        widget = MaskParamWidget()
    else:
        raise ValueError(f"parameter {param.name!r}: unknown kind {param.kind!r}")
    widget.setObjectName(f"param_{param.name}")
    widget.setToolTip(tip)
    return widget


def _summary(operation: Operation) -> str:
    """The operation's summary, and what its shipped model supports where the registry says so."""
    note = operation.availability_note()
    return f"{operation.summary}\n\n{note}" if note else operation.summary


def widget_value(widget: QWidget) -> Any:
    if isinstance(widget, QDoubleSpinBox | QSpinBox):
        return widget.value()
    if isinstance(widget, QComboBox):
        return widget.currentText()
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QLineEdit):
        return widget.text()
    value = getattr(widget, "value", None)  # e.g. a drawn mask
    if callable(value):
        return value()
    raise TypeError(f"no value for {type(widget).__name__}")


class ParamForm(QWidget):
    """The parameters of one operation as a form; ``values()`` gives what ``ops.run`` takes."""

    def __init__(self, operation: Operation, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.operation = operation
        self.widgets: dict[str, QWidget] = {}
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 4, 0, 4)
        for param in operation.params:
            widget = param_widget(param)
            self.widgets[param.name] = widget
            label = QLabel(param.name.replace("_", " ").capitalize())
            label.setToolTip(param.help)
            layout.addRow(label, widget)

    def values(self) -> dict[str, Any]:
        return {name: widget_value(widget) for name, widget in self.widgets.items()}


class OperationPanel(QWidget):
    """One family's tab: operation chooser, its summary and parameters, Preview on slice and Run on series."""

    previewRequested = pyqtSignal(str, dict)  # operation name, parameter values
    runRequested = pyqtSignal(str, dict)

    def __init__(self, family: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from medscan.ops import operations

        self.family = family
        self.operations = operations(family)
        self.forms: dict[str, ParamForm] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        if not self.operations:
            self.empty = QLabel(EMPTY_TEXT[family])
            self.empty.setObjectName("opsEmpty")
            self.empty.setWordWrap(True)
            layout.addWidget(self.empty)
            layout.addStretch(1)
            self.chooser = self.preview_button = self.run_button = None
            return
        self.empty = None
        self.chooser = QComboBox()
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setObjectName("opSummary")
        self.stack = QStackedWidget()
        for operation in self.operations:
            self.chooser.addItem(("SYNTHETIC · " if operation.synthetic else "") + operation.title, operation.name)
            form = ParamForm(operation)
            self.forms[operation.name] = form
            self.stack.addWidget(form)
        self.preview_button = QPushButton("Preview on slice")
        self.preview_button.setToolTip("Run on the slice on screen only (fast); the result opens before/after")
        self.run_button = QPushButton("Run on series")
        self.run_button.setToolTip("Run on every slice of the series in the background")
        buttons = QHBoxLayout()
        buttons.addWidget(self.preview_button)
        buttons.addWidget(self.run_button)
        layout.addWidget(self.chooser)
        layout.addWidget(self.summary)
        layout.addWidget(self.stack)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self.chooser.currentIndexChanged.connect(self._on_chosen)
        self.preview_button.clicked.connect(lambda: self.previewRequested.emit(*self._request()))
        self.run_button.clicked.connect(lambda: self.runRequested.emit(*self._request()))
        self._modality: str | None = None
        self._on_chosen(0)

    def current_operation(self) -> Operation | None:
        return self.operations[self.chooser.currentIndex()] if self.chooser is not None else None

    def select(self, name: str) -> None:
        if self.chooser is not None:
            self.chooser.setCurrentIndex(max(0, self.chooser.findData(name)))

    def set_modality(self, modality: str | None) -> None:
        """Enable the buttons when a series is shown that the operation accepts (the registry's rule, which
        ``registry.run`` enforces again; here it only spares the user a refusal)."""
        self._modality = modality
        operation = self.current_operation()
        if operation is None or self.preview_button is None or self.run_button is None:
            return
        ok = operation.accepts(modality)
        for button in (self.preview_button, self.run_button):
            button.setEnabled(ok)
        if modality is not None and not ok:
            self.summary.setText(f"{_summary(operation)}\n\nNot for {modality}: {operation.refusal(modality)}.")

    def _on_chosen(self, index: int) -> None:
        operation = self.operations[index]
        self.stack.setCurrentIndex(index)
        self.summary.setText(_summary(operation))
        self.set_modality(self._modality)

    def _request(self) -> tuple[str, dict]:
        operation = self.current_operation()
        assert operation is not None
        return operation.name, self.forms[operation.name].values()


class OperationsPanel(QWidget):
    """The Operations dock: device choice, the Clean and Generate tabs, and the results."""

    previewRequested = pyqtSignal(str, dict)
    runRequested = pyqtSignal(str, dict)
    deviceChanged = pyqtSignal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.device = QComboBox()
        self.device.setObjectName("deviceCombo")
        self.device.setToolTip("Where operations run: Auto uses the CUDA GPU when there is one")
        for label, value in DEVICES:
            self.device.addItem(label, value)
        self.device.currentIndexChanged.connect(lambda _i: self.deviceChanged.emit(self.device_choice()))
        self.tabs = QTabWidget()
        self.tabs.setObjectName("opsTabs")
        self.panels: dict[str, OperationPanel] = {}
        for family, title in FAMILIES:
            panel = OperationPanel(family)
            panel.previewRequested.connect(self.previewRequested)
            panel.runRequested.connect(self.runRequested)
            self.panels[family] = panel
            self.tabs.addTab(panel, title)
        self.results = ResultsPanel()
        device_row = QHBoxLayout()
        device_row.addWidget(QLabel("Device"))
        device_row.addWidget(self.device, 1)
        results_box = QGroupBox("Results")
        results_layout = QVBoxLayout(results_box)
        results_layout.setContentsMargins(4, 4, 4, 4)
        results_layout.addWidget(self.results)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(device_row)
        layout.addWidget(self.tabs)
        layout.addWidget(results_box, 1)

    def device_choice(self) -> str:
        return str(self.device.currentData())

    def set_device_choice(self, value: str) -> None:
        index = self.device.findData(value)
        self.device.setCurrentIndex(index if index >= 0 else 0)

    def set_modality(self, modality: str | None) -> None:
        for panel in self.panels.values():
            panel.set_modality(modality)

    def request(self, what: str) -> None:
        """Press the current tab's Preview ('preview') or Run ('run') button, if it is usable."""
        panel = self.tabs.currentWidget()
        button = getattr(panel, "preview_button" if what == "preview" else "run_button", None)
        if button is not None and button.isEnabled():
            button.click()

    def show_operation(self, name: str) -> bool:
        """Bring ``name``'s tab and form to the front; False when no tab offers it."""
        for panel in self.panels.values():
            if any(op.name == name for op in panel.operations):
                self.tabs.setCurrentWidget(panel)
                panel.select(name)
                return True
        return False
