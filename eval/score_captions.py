"""Score captions with the coco-caption metrics: same as ``captioner eval`` (see eval/README.md)."""

import sys

from captioner.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
