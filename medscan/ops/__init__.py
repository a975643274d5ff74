"""The operation registry shared by the CLI, the GUI, batch jobs and the installer's self-test.

Importing this package declares the built-in operations (``clean`` and ``generate`` families) from
``medscan.ops.catalog``, by reference: their implementation modules, and the model stacks behind them, are
imported the first time an operation runs.
"""

from medscan.ops import catalog as _catalog  # noqa: F401  (declares the built-in operations)
from medscan.ops.registry import Operation, Param, Result, get, operations, run

__all__ = ["Operation", "Param", "Result", "get", "operations", "run"]
