"""``captioner app``: serve the demo app on this computer."""
from __future__ import annotations

import argparse

from ..settings import boolean, number
from .common import add_precision


def configure(p: argparse.ArgumentParser, name: str) -> None:
    p.description = ("Serve the captioner demo: caption a photo, look inside the LSTM, ask questions about the "
                     "photo. Offline on the CPU; open the address it prints.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: the whole network; "
                                                       "default: 127.0.0.1)")
    p.add_argument("--port", type=number(int, low=1, high=65535), default=7860, help="port (default: 7860)")
    p.add_argument("--share", type=boolean, nargs="?", const=True, default=False, metavar="true|false",
                   help="also make a public gradio.live link (needs internet; default: false)")
    p.add_argument("--monitoring", type=boolean, nargs="?", const=True, default=False, metavar="true|false",
                   help="serve Gradio's request statistics at /monitoring (default: false)")
    p.add_argument("--weights", help="weights entry name, or folder with caption/ (and vqa/); default: the "
                                     "default entry, the shipped weights")
    add_precision(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..app.server import serve

    return serve(args.weights, args.precision, args.host, args.port, args.share, args.monitoring)
