"""``python -m ventralkit``, same as the ``ventralkit`` command."""

import sys

from .cli import main

sys.exit(main())
