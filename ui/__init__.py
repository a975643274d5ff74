"""medscan-gui: the PyQt6 workstation window. Qt lives only here; the engine is ``medscan``.

Layout comes from Qt Designer ``.ui`` files in this folder, loaded at run time; widgets that need
code sit beside them as ``qt_*.py``. Entry point: ``ui.app:main`` (console script ``medscan-gui``).
"""
