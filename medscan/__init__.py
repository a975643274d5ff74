"""medscan: the engine behind the Clean and Generate workstation (no Qt here)."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # ``__version__`` is looked up on first use (PEP 562): importlib.metadata costs ~70 ms at every start-up,
    # and most commands never print or record the version.
    if name != "__version__":
        raise AttributeError(f"module 'medscan' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("medscan")
    except PackageNotFoundError:  # running from a source tree without installation
        value = "0.0.0+source"
    globals()["__version__"] = value
    return value
