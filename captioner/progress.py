"""Progress bars on stderr, all made here, so that one switch (``--quiet``) turns every one of them off while
warnings and errors, printed apart, still show."""

from __future__ import annotations

import sys

from tqdm import tqdm

_bars_on = True


def show_progress(on: bool) -> None:
    """Show progress bars (the default) or not; the command line calls this once per command (``--quiet``)."""
    global _bars_on
    _bars_on = on


def progress_bar(total: int, desc: str, unit: str, disable: bool = False, **kwargs) -> tqdm:
    """A tqdm bar on stderr, off where ``disable`` is true or bars are off (:func:`show_progress`)."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable or not _bars_on, **kwargs)
