"""``python -m gplinker``: the gplinker command line."""

import sys

from gplinker.cli import main

sys.exit(main())
