"""``python -m integrity``: the same as the ``mail-integrity`` command."""

import sys

from integrity.cli import main

sys.exit(main())
