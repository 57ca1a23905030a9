"""``python -m captioner.cli`` runs the ``captioner`` command."""

import sys

from .main import main

sys.exit(main())
