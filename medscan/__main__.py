"""``python -m medscan`` is the ``medscan`` command (for environments without the console script)."""

import sys

from medscan.cli import main

sys.exit(main())
