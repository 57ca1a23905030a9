"""Image input: safe decoding of any image a user gives (one error type, one line), file and folder
expansion, and image ids from file names. Dataset formats are in :mod:`captioner.data`."""

from __future__ import annotations

import glob
import re
import warnings
from pathlib import Path
from typing import Callable, Hashable, Iterable, Iterator, Union

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

ImageInput = Union[str, Path, Image.Image, np.ndarray]  # a file, a PIL image, or pixels (H, W[, C])
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 80_000_000  # larger images are refused rather than risk running out of memory
# Wider than 3:1 or taller than 1:3 (a panorama, a long screenshot): the model sees every image squashed to a
# square, as it was trained (COCO and Flickr8k photos are 4:3 or so, rarely past 2:1), so such a scene is distorted
# past what it learned and its caption is marked not sure, with the reason (aspect_warning).
MAX_ASPECT = 3.0
# image formats PIL cannot read here: a folder scan reports these files instead of passing over them in silence
UNSUPPORTED_SUFFIXES = {".heic", ".heif", ".avif", ".jxl", ".cr2", ".cr3", ".nef", ".arw", ".dng", ".raw", ".svg"}


class BadImageError(ValueError):
    """An input that cannot be turned into an RGB image; the message is one line for users."""


BAND_ROWS = 256  # rows converted at a time, so that a conversion's peak memory is near the 8-bit result's


def _bands(img: Image.Image) -> Iterator[tuple[int, Image.Image]]:
    """``img`` in bands of :data:`BAND_ROWS` rows, each as (its top row, a copy of it)."""
    for top in range(0, img.height, BAND_ROWS):
        yield top, img.crop((0, top, img.width, min(top + BAND_ROWS, img.height)))


# Modes PIL's ``Image.reduce`` takes as they are. It takes LA and RGBA too, but through a premultiplied copy of the
# whole image (320 MB more at 80 megapixels), so those go band by band like the modes it refuses.
REDUCIBLE = ("L", "RGB", "CMYK")


def _shrunk(img: Image.Image, size_hint: int | None) -> Image.Image:
    """``img`` reduced by the largest whole factor that keeps both sides at least ``size_hint`` (averaging
    blocks of pixels), as JPEG's ``draft`` does while decoding: detail the model's resize would throw away is
    dropped before the colour conversion copies the image, which at 80 megapixels saves 240 MB. Other modes than
    :data:`REDUCIBLE` (palette, 1-bit, with alpha) are converted and reduced band by band: converted whole, an
    80-megapixel palette PNG of 500 kB cost 600 MB."""
    factor = min(img.width, img.height) // size_hint if size_hint else 1
    if factor < 2:
        return img
    if img.mode in REDUCIBLE:
        return img.reduce(factor)
    alpha = img.mode in ("PA", "La", "RGBa") or img.mode == "P" and "transparency" in img.info
    mode = img.mode if img.mode in ("LA", "RGBA") else "RGBA" if alpha else "L" if img.mode == "1" else "RGB"
    rows = factor * max(1, BAND_ROWS // factor)  # whole blocks of pixels in every band but the last
    out = Image.new(mode, (-(-img.width // factor), -(-img.height // factor)))
    for top in range(0, img.height, rows):
        band = img.crop((0, top, img.width, min(top + rows, img.height)))
        out.paste(band.convert(mode).reduce(factor), (0, top // factor))
    return out


def _to_8bit_rgb(img: Image.Image, size_hint: int | None = None) -> Image.Image:
    """Convert any PIL mode (16-bit, float, CMYK, palette, alpha) to 8-bit RGB, first shrunk towards ``size_hint``
    (:func:`_shrunk`). 16-bit, 32-bit and float images are stretched from their darkest to their brightest value;
    transparency becomes white. Both go band by band (:func:`_bands`): at 80 megapixels a whole-image float64 copy
    alone would take 640 MB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        lo, hi = img.getextrema()
        gray = Image.new("L", img.size)
        for top, band in _bands(img):
            values = np.asarray(band, dtype=np.float64)
            values = (values - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(values)
            gray.paste(Image.fromarray(values.round().astype(np.uint8)), (0, top))
        img = gray
    img = _shrunk(img, size_hint)
    if img.mode in ("RGBA", "LA", "PA") or img.mode == "P" and "transparency" in img.info:
        rgb = Image.new("RGB", img.size)
        for top, band in _bands(img):
            background = Image.new("RGBA", band.size, (255, 255, 255, 255))
            rgb.paste(Image.alpha_composite(background, band.convert("RGBA")).convert("RGB"), (0, top))
        return rgb
    return img.convert("RGB")


def load_image(source: ImageInput, size_hint: int | None = None) -> Image.Image:
    """Open ``source`` as an upright 8-bit RGB image, or raise :class:`BadImageError`.

    ``size_hint`` lets decoding skip detail that a later resize to that size would throw away (JPEG's ``draft``,
    else :func:`_shrunk`).
    """
    name = (
        "image" if isinstance(source, (Image.Image, np.ndarray)) else getattr(source, "filename", None) or str(source)
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS below is stricter
            if isinstance(source, Image.Image):
                img = source
            elif isinstance(source, np.ndarray):
                img = from_array(source)
            else:
                path = Path(source)
                if re.match(r"^[a-z][a-z0-9+.-]*://", str(source), re.IGNORECASE):
                    raise BadImageError(f"{source}: a URL; captioner works offline, so download the image first")
                if not path.exists():
                    raise BadImageError(f"{path}: file not found")
                if path.is_dir():
                    raise BadImageError(f"{path}: is a folder, not an image")
                if not path.is_file():  # a named pipe or a device: reading it could block forever
                    raise BadImageError(f"{path}: not a regular file, not an image")
                img = Image.open(path)
            if img.width * img.height > MAX_PIXELS:
                raise BadImageError(
                    f"{name}: image too large ({img.width}x{img.height} pixels, over the "
                    f"{MAX_PIXELS / 1e6:g}-megapixel limit)"
                )
            if img.width == 0 or img.height == 0:
                raise BadImageError(f"{name}: empty image ({img.width}x{img.height} pixels)")
            if size_hint and img.format == "JPEG":
                img.draft("RGB", (size_hint, size_hint))
            if img.getexif().get(ExifTags.Base.Orientation, 1) != 1:  # exif_transpose would copy any image whole
                img = ImageOps.exif_transpose(img)
            return _to_8bit_rgb(img, size_hint)
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError(f"{name}: not an image file") from None
    except Image.DecompressionBombError:  # PIL refuses to open it at all, so its size is unknown here
        raise BadImageError(f"{name}: image too large (over {2 * Image.MAX_IMAGE_PIXELS} pixels)") from None
    except (OSError, SyntaxError, ValueError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BadImageError(f"{name}: cannot read image ({why})") from None


def aspect_warning(image: Image.Image) -> str | None:
    """One line when ``image`` is wider or taller than :data:`MAX_ASPECT` to 1 (a shrunk image keeps its shape, so
    :func:`load_image`'s will do), else None."""
    width, height = image.size
    ratio = max(width, height) / max(min(width, height), 1)
    if ratio <= MAX_ASPECT:
        return None
    shape = "wider than tall" if width > height else "taller than wide"
    return (
        f"{ratio:.1f} times {shape} (over {MAX_ASPECT:g} to 1): the model sees it squashed to a square, "
        "so the caption may well be wrong"
    )


def from_array(pixels: np.ndarray) -> Image.Image:
    """Pixels ``(H, W)``, ``(H, W, 1|3|4)`` (RGB or RGBA, as PIL and OpenCV-converted-to-RGB arrays come), as a PIL
    image: uint8 as they are, floats in [0, 1] scaled to 0-255. BadImageError for any other shape or type."""
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or pixels.ndim == 3 and pixels.shape[2] not in (3, 4):
        raise BadImageError(f"image: pixels must be (height, width) or (height, width, 3 or 4), not {pixels.shape}")
    if pixels.dtype.kind == "f":
        if not np.isfinite(pixels).all():
            raise BadImageError("image: pixels hold NaN or infinite values")
        pixels = (np.clip(pixels, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    elif pixels.dtype != np.uint8:
        raise BadImageError(f"image: pixels must be uint8 (0-255) or floats (0-1), not {pixels.dtype}")
    if pixels.shape[0] * pixels.shape[1] > MAX_PIXELS:
        raise BadImageError(
            f"image: image too large ({pixels.shape[1]}x{pixels.shape[0]} pixels, over the "
            f"{MAX_PIXELS / 1e6:g}-megapixel limit)"
        )
    return Image.fromarray(np.ascontiguousarray(pixels))


def expand_paths(patterns: Iterable[str], skipped: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Files named by ``patterns``: files as given, folders' image files (sorted), and glob matches.

    A pattern that matches nothing is kept as is, so the caller can report it missing. A folder's files that look
    like images but cannot be read (:data:`UNSUPPORTED_SUFFIXES`, broken links) are added to ``skipped`` with the
    reason, for the caller to report. An empty pattern (an unset shell variable) is a ValueError: read as ``.``
    it would caption the whole current folder tree.
    """
    out: list[Path] = []
    for pattern in patterns:
        if not str(pattern).strip():
            raise ValueError("an empty path names no image (an unset shell variable?)")
        p = Path(pattern)
        if p.is_dir():
            for q in sorted(p.rglob("*")):
                suffix = q.suffix.lower()
                if suffix in IMAGE_SUFFIXES and q.is_file():
                    out.append(q)
                elif skipped is not None and suffix in IMAGE_SUFFIXES | UNSUPPORTED_SUFFIXES and not q.is_dir():
                    why = (
                        f"{suffix} images are not supported"
                        if suffix in UNSUPPORTED_SUFFIXES
                        else "a broken link"
                        if q.is_symlink() and not q.exists()
                        else "not a regular file"
                    )
                    skipped.append((q, why))
        elif p.exists():
            out.append(p)
        else:
            matches = sorted(glob.glob(pattern, recursive=True))
            out.extend(Path(m) for m in matches) if matches else out.append(p)
    return out


def images_by_stem(folder: str | Path, key: Callable[[Path], Hashable] = lambda path: path.stem) -> dict:
    """The image files of ``folder`` (not its subfolders) by name without extension, or by ``key(file)`` (COCO's
    id: :func:`image_id_from_filename`), in name order. Two files of one name (``1.jpg`` and ``1.png``) are
    refused with a one-line ValueError naming both: a look-up by name could not say which one is meant."""
    found: dict = {}
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            name = key(path)
            if name in found:
                raise ValueError(
                    f"{folder}: {found[name].name} and {path.name} are both image {name!r}; rename or remove one"
                )
            found[name] = path
    return found


_COCO_ID = re.compile(r"^(?:COCO_[a-z]+\d{4}_)?(\d{6,12})$")


def image_id_from_filename(path: str | Path) -> int | str:
    """COCO's integer id when the name carries one (``000000123456.jpg``), else the file name."""
    name = Path(path).name
    m = _COCO_ID.match(Path(name).stem)
    return int(m.group(1)) if m else name
