"""Pre-screening: quality triage badges for every series (``medscan screen``, the study browser, the database)."""

from medscan.screen.quality import Badge, screen_record, screen_scan, worst

__all__ = ["Badge", "screen_record", "screen_scan", "worst"]
