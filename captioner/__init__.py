"""captioner: image captioning and visual question answering, offline on the CPU.

    from captioner import Captioner
    Captioner.from_pretrained().caption("photo.jpg")
"""
from .pipeline import Captioner, VQAPredictor

__all__ = ["Captioner", "VQAPredictor"]
__version__ = "0.1.0"
