"""``python app.py [OPTIONS]`` in a checkout: the demo app, the same as ``captioner app [OPTIONS]``.

The app itself is :mod:`captioner.app`, so that an installed package (a wheel) has it too.
"""

import sys

from captioner.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["app", *sys.argv[1:]]))
