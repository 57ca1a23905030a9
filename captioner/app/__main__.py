"""``python -m captioner.app [OPTIONS]``: the demo app, the same as ``captioner app [OPTIONS]``."""
import sys

from ..cli.main import main

sys.exit(main(["app", *sys.argv[1:]]))
