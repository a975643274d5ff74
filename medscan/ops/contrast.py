"""Which MR contrast a series is, from what its names say (translate and pseudo-CT both ask)."""

from __future__ import annotations

import re


def contrast_from_text(text: str) -> str | None:
    """T1 / T1c / T2 / FLAIR named in a series description, protocol or file name; None when it does not say.

    FLAIR before T2 (a "T2 FLAIR" is FLAIR), post-contrast T1 before T1 (t1c, t1ce, t1gd, "T1 POST", "+C", gad).
    T2* (gradient echo) is not T2 and stays unknown.
    """
    t = text.lower()
    if re.search(r"flair|(^|[^a-z0-9])(fla|t2f|dark[ _-]?fluid|tirm)([^a-z0-9]|$)", t):
        return "FLAIR"
    t1 = re.search(r"(^|[^a-z0-9])(t1|t1w|mprage|spgr|t1c|t1ce|t1gd)", t)
    post = re.search(r"t1c|t1ce|t1gd|t1[ _-]?\+[ _-]?c|(^|[^a-z0-9])(post|gd|gad|gado|contrast|ce|km)([^a-z0-9]|$)"
                     r"|\+c([^a-z0-9]|$)", t)
    if t1 and post:
        return "T1c"
    if re.search(r"(^|[^a-z0-9])t2[ _-]?(\*|star)", t):
        return None
    if re.search(r"(^|[^a-z0-9])(t2|t2w)([^a-z0-9]|$)", t):
        return "T2"
    if t1:
        return "T1"
    return None
