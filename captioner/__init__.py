"""captioner: image captioning and visual question answering, offline on the CPU.

from captioner import Captioner
Captioner.from_pretrained().caption("photo.jpg")
"""

from __future__ import annotations

__all__ = ["Captioner", "VQAPredictor"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``Captioner`` and ``VQAPredictor``, imported on first use (PEP 562): so that ``python -m captioner.X`` runs
    module X once, not once as a dependency of the pipeline and again as ``__main__``, and ``captioner --version``
    does not import torch."""
    if name in __all__:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'captioner' has no attribute {name!r}")
