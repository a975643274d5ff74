"""The dark theme: Fusion style, a dark palette, and a small style sheet for the chrome.

Reading rooms are dim; a dark frame keeps the eye on the image and does not shift the perceived
grey levels the way a bright frame would.
"""

from __future__ import annotations

from PyQt6.QtGui import QColor, QPalette
from PyQt6.QtWidgets import QApplication

COLORS = {
    "window": "#1d1f23",
    "base": "#15171a",
    "alternate": "#1a1c20",
    "panel": "#24272c",
    "border": "#33373e",
    "text": "#d8dade",
    "muted": "#8b9099",
    "highlight": "#2d6cb5",
    "accent": "#4ea1ff",
    "warning": "#e0a030",
    "error": "#e05050",
}

STYLE_SHEET = """
QMainWindow::separator { background: %(border)s; width: 3px; height: 3px; }
QDockWidget { color: %(text)s; }
QDockWidget::title {
    background: %(panel)s; padding: 5px 8px; border-bottom: 1px solid %(border)s;
    text-align: left; font-weight: 600;
}
QTreeView, QListView, QTextBrowser {
    background: %(base)s; alternate-background-color: %(alternate)s;
    border: none; selection-background-color: %(highlight)s;
}
QTreeView::item { padding: 3px 2px; }
QHeaderView::section {
    background: %(panel)s; color: %(muted)s; border: none; border-right: 1px solid %(border)s;
    border-bottom: 1px solid %(border)s; padding: 4px 6px;
}
QMenuBar { background: %(window)s; border-bottom: 1px solid %(border)s; }
QMenuBar::item { padding: 4px 10px; background: transparent; }
QMenuBar::item:selected { background: %(panel)s; }
QMenu { background: %(panel)s; border: 1px solid %(border)s; padding: 4px 0; }
QMenu::item { padding: 5px 28px 5px 24px; }
QMenu::item:selected { background: %(highlight)s; }
QMenu::item:disabled { color: %(muted)s; }
QMenu::separator { height: 1px; background: %(border)s; margin: 4px 8px; }
QStatusBar { background: %(window)s; border-top: 1px solid %(border)s; color: %(muted)s; }
QStatusBar QLabel { color: %(muted)s; padding: 0 8px; }
QStatusBar::item { border: none; }
QWidget#viewerBar, QWidget#sliceBar { background: %(panel)s; }
QWidget#viewerBar { border-bottom: 1px solid %(border)s; }
QWidget#sliceBar { border-top: 1px solid %(border)s; }
QWidget#viewerBar QLabel, QWidget#sliceBar QLabel { color: %(muted)s; }
QWidget#sliceBar QLabel#sliceLabel { color: %(text)s; }
QComboBox, QSpinBox {
    background: %(base)s; border: 1px solid %(border)s; border-radius: 3px; padding: 2px 6px;
    min-height: 20px;
}
QComboBox:hover, QSpinBox:hover { border-color: %(highlight)s; }
QComboBox QAbstractItemView { background: %(panel)s; selection-background-color: %(highlight)s; }
QToolButton { border: 1px solid transparent; border-radius: 3px; padding: 3px 8px; }
QToolButton:hover { border-color: %(border)s; background: %(base)s; }
QToolButton:checked { background: %(highlight)s; border-color: %(highlight)s; }
QSlider::groove:horizontal { height: 4px; background: %(border)s; border-radius: 2px; }
QSlider::sub-page:horizontal { background: %(highlight)s; border-radius: 2px; }
QSlider::handle:horizontal {
    background: %(text)s; width: 12px; height: 12px; margin: -5px 0; border-radius: 6px;
}
QSlider::handle:horizontal:disabled { background: %(muted)s; }
QProgressBar { background: %(base)s; border: none; border-radius: 3px; }
QProgressBar::chunk { background: %(accent)s; border-radius: 3px; }
QLabel#jobsEmpty { color: %(muted)s; padding: 6px; }
QLabel#jobDetail { color: %(muted)s; font-size: 8pt; }
QToolButton#jobCancel { padding: 0 4px; }
QTextBrowser#seriesDetails { border-top: 1px solid %(border)s; padding: 4px; }
QToolTip { background: %(panel)s; color: %(text)s; border: 1px solid %(border)s; }
""" % COLORS  # noqa: UP031 (the CSS braces make str.format awkward)


def dark_palette() -> QPalette:
    palette = QPalette()
    role, group = QPalette.ColorRole, QPalette.ColorGroup
    colors = {
        role.Window: COLORS["window"], role.WindowText: COLORS["text"], role.Base: COLORS["base"],
        role.AlternateBase: COLORS["alternate"], role.ToolTipBase: COLORS["panel"],
        role.ToolTipText: COLORS["text"], role.Text: COLORS["text"], role.Button: COLORS["panel"],
        role.ButtonText: COLORS["text"], role.BrightText: "#ffffff", role.Link: COLORS["accent"],
        role.Highlight: COLORS["highlight"], role.HighlightedText: "#ffffff",
        role.PlaceholderText: COLORS["muted"], role.Mid: COLORS["border"], role.Dark: "#101114",
        role.Light: "#3a3f47", role.Midlight: "#2e3238", role.Shadow: "#000000",
    }
    for color_role, value in colors.items():
        palette.setColor(color_role, QColor(value))
    for color_role in (role.WindowText, role.Text, role.ButtonText):
        palette.setColor(group.Disabled, color_role, QColor(COLORS["muted"]))
    return palette


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    app.setStyleSheet(STYLE_SHEET)
