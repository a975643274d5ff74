"""The operation registry shared by the CLI, the GUI and the installer's self-test.

Importing this package registers the built-in operations (``clean`` and ``generate`` families).
"""

from medscan.ops import clean as _clean  # noqa: F401  (registers the Clean operations)
from medscan.ops import fill as _fill  # noqa: F401  (registers inpaint and fill_slices)
from medscan.ops import motion as _motion  # noqa: F401  (registers motion_correct)
from medscan.ops import restore as _restore  # noqa: F401  (registers sharpen and super_resolve)
from medscan.ops import study_adapt as _study_adapt  # noqa: F401  (registers clean adapt)
from medscan.ops import translate as _translate  # noqa: F401  (registers translate)
from medscan.ops.registry import Operation, Param, Result, get, operations, run

__all__ = ["Operation", "Param", "Result", "get", "operations", "run"]
