"""Auto-annotation: segmentation tasks, findings with measurements, review state and DICOM SEG/SR.

Importing this package registers the built-in segmentation tasks (one import line per module below).
"""

from medscan.annotate import hu_rules  # noqa: F401  (registers task "hu")
from medscan.annotate import learned as _learned  # noqa: F401  (registers brain-tumour and organs)
from medscan.annotate.registry import Segmentation, SegmentationTask, get_task, register_task, tasks

__all__ = ["Segmentation", "SegmentationTask", "get_task", "register_task", "tasks"]
