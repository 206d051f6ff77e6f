"""``python -m mobilenets.cli`` runs the command line, as ``python -m mobilenets`` does."""

import sys

from . import main

sys.exit(main())
