"""``python -m ventralkit.cli`` (what torchrun needs: ``torchrun ... -m ventralkit.cli train ...``)."""

import sys

from . import main

sys.exit(main())
