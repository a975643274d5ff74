"""medscan: the engine behind the Clean and Generate workstation (no Qt here)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("medscan")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"
