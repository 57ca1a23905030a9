"""``captioner app``: serve the demo app on this computer."""

from __future__ import annotations

import argparse

from ..settings import boolean, number
from .common import add_precision


def configure(p: argparse.ArgumentParser, name: str) -> None:
    p.description = (
        "Serve the captioner demo: caption a photo (Caption), look inside the decoder's cells and "
        "gradients (Look inside), ask a question or pick among choices (Ask), and talk about the photo "
        "(Chat). Offline on the CPU; open the address it prints."
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0: the whole network; default: 127.0.0.1)"
    )
    p.add_argument("--port", type=number(int, low=1, high=65535), default=7860, help="port (default: 7860)")
    p.add_argument(
        "--share",
        type=boolean,
        nargs="?",
        const=True,
        default=False,
        metavar="true|false",
        help="also make a public gradio.live link (needs internet; default: false)",
    )
    p.add_argument(
        "--monitoring",
        type=boolean,
        nargs="?",
        const=True,
        default=False,
        metavar="true|false",
        help="serve Gradio's request statistics at /monitoring (default: false)",
    )
    p.add_argument(
        "--weights",
        help="weights entry name, or folder with caption/ (and vqa/); default: the default entry, the shipped weights",
    )
    add_precision(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import socket

    from ..app.server import serve
    from .common import fail

    try:  # a host this machine cannot listen on fails here in words, not later as "Cannot find empty port"
        family, kind, _, _, address = socket.getaddrinfo(args.host, 0, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.bind(address)
    except (OSError, UnicodeError) as e:
        return fail(f"--host {args.host}: not an address this machine can listen on ({getattr(e, 'strerror', e)})", 2)

    return serve(args.weights, args.precision, args.host, args.port, args.share, args.monitoring, args.runtime)
