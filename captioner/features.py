"""Feature extraction and the on-disk feature cache.

With a frozen encoder the features never change, so they are computed once per (encoder, image
set) and kept in a memory-mapped ``.npy`` file that later runs reuse: the pooled vector, or the
whole region grid for an attention decoder. When the encoder's top blocks are fine-tuned, what never
changes is the output of the frozen trunk below them, so that grid is what is cached. They are
stored as float16 (post-ReLU activations of modest range lose nothing that matters), which halves
the file; even so the grid is 49 times the vector: Flickr8k's 6,000 training images take 750 MB
with EfficientNet-Lite0's 49 x 1280 grid.
"""

from __future__ import annotations

import errno
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from .encoder import ImageEncoder
from .images import BadImageError, ImageInput, load_image
from .io import remove_orphan
from .progress import progress_bar

T = TypeVar("T")

PARTIAL = ".partial"  # suffix of a cache file being written, after the writer's process id
ENCODE_CHUNK = 4  # small batches keep the CNN's activations in cache: ~2x faster than 32 on a laptop CPU


def default_cache_dir() -> Path:
    """Where features are cached when a run names no folder: ``$CAPTIONER_CACHE``, else ``~/.cache/captioner``.
    Read when a run starts (not when the module is imported), so the variable set by then is the one used."""
    return Path(os.environ.get("CAPTIONER_CACHE") or Path.home() / ".cache" / "captioner")


def batched(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@torch.inference_mode()
def encode_images(
    encoder: ImageEncoder, images: Iterable[ImageInput], flip: bool = False, trunk: bool = False
) -> torch.Tensor:
    """Region features ``(N, R, feature_dim)`` of valid images, or with ``trunk`` the frozen trunk's
    output (see :meth:`ImageEncoder.trunk`); ``flip`` mirrors the images left-right first."""
    pixels = torch.stack([encoder.preprocess(img) for img in images])
    if flip:
        pixels = pixels.flip(-1)
    run = encoder.trunk if trunk else encoder
    return torch.cat([run(chunk) for chunk in pixels.split(ENCODE_CHUNK)])


def _cache_key(encoder: ImageEncoder, paths: Sequence[Path], flip: bool, regions: bool) -> str:
    # The weights and the preprocessing are part of the key: they change every feature. The default image
    # size goes with the encoder's name, so only another one is added (existing caches stay valid).
    spec, pre = encoder.spec, encoder.preprocessing
    size = "" if pre.image_size == spec.image_size else f"|size={pre.image_size}"
    h = hashlib.sha1(
        f"{spec.name}|{encoder.trunk_digest()}|{pre.mean}|{pre.std}{size}|flip={flip}|regions={regions}"
        f"|float16|trunk={encoder.trainable_blocks}".encode()
    )
    for p in paths:
        st = p.stat()
        h.update(f"|{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cached_features(
    encoder: ImageEncoder,
    paths: Sequence[str | Path],
    cache_dir: str | Path | None = None,
    flip: bool = False,
    regions: bool = False,
    batch_size: int = 32,
    desc: str = "features",
) -> np.ndarray:
    """Features of ``paths`` as a read-only float16 memory map, computed (with a progress bar) only if
    not cached: region grids ``(N, R, D)`` with ``regions``, else their means ``(N, D)``; for an encoder
    with trainable top blocks, its trunk's output ``(N, C, H, W)``, which ``encoder.top`` turns into
    region features.

    The file is written to a temporary name and renamed when complete, so an interrupted run never
    leaves a corrupt cache behind; nor a stray temporary file: an interrupted run deletes its own, and
    one whose writer was killed outright is deleted by the next call. The file's disk space is reserved before
    it is mapped, so a disk too full for it is an OSError naming it (not SIGBUS when a page cannot be stored).
    ``cache_dir`` None: :func:`default_cache_dir`.
    """
    trunk = encoder.trainable_blocks > 0
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no images to encode")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{encoder.spec.name}-{len(paths)}-{_cache_key(encoder, paths, flip, regions)}.npy"
    if not target.exists():
        _remove_orphaned_partials(cache_dir)
        partial = target.with_suffix(f".{os.getpid()}{PARTIAL}")
        out = None
        try:
            with progress_bar(len(paths), desc, "img") as bar:
                for i, chunk in enumerate(batched(paths, batch_size)):
                    feats = encode_images(encoder, chunk, flip, trunk)
                    feats = (feats if regions or trunk else feats.mean(1)).numpy()
                    if out is None:  # the grid size is known once the first batch is through
                        out = _reserved_memmap(partial, (len(paths), *feats.shape[1:]), target)
                    out[i * batch_size : i * batch_size + len(chunk)] = feats
                    bar.update(len(chunk))
            out.flush()
            del out
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)  # only still there when the run was interrupted
    return np.load(target, mmap_mode="r")


def _reserved_memmap(partial: Path, shape: tuple[int, ...], target: Path) -> np.memmap:
    """A float16 ``.npy`` memory map of ``shape`` at ``partial``, its disk space allocated up front: pages of a
    sparse map that the disk has no room for kill the process with SIGBUS when written. OSError naming the
    cache file ``target`` when the space is not there."""
    try:
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=shape)
        _allocate(partial)
        return out
    except OSError as e:
        size = np.prod(shape) * 2 / 2**20
        raise OSError(
            e.errno,
            f"cannot write the feature cache, {size:.0f} MiB ({e.strerror or e}); free some "
            "space or give another --cache-dir",
            str(target),
        ) from None


def _allocate(path: Path) -> None:
    """Allocate the disk blocks of the (sparse) file ``path`` now, so that a full disk is an OSError here; a no-op
    where the OS (macOS) or the file system cannot."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):  # those: this file system cannot
                raise


def _remove_orphaned_partials(cache_dir: Path) -> None:
    """Delete the temporary files (``NAME.PID.partial``) of runs that were killed before they could clean up;
    those of live processes are being written."""
    for path in cache_dir.glob(f"*{PARTIAL}"):
        remove_orphan(path, path.name[: -len(PARTIAL)].rpartition(".")[2])


def image_batches(
    items: Sequence[T],
    batch_size: int,
    size_hint: int | None = None,
    path_of: Callable[[T], ImageInput] = lambda item: item,
    progress: bool = True,
    desc: str = "captioning",
) -> Iterator[tuple[list[T], list, list[tuple[T, str]]]]:
    """Batches of ``items`` as (the readable items, their images, (item, one-line reason) for the others), with a
    progress bar on stderr unless ``progress`` is false. ``path_of`` gives an item's image (path or PIL image).
    The next batch is read in a second thread while the caller works on this one (JPEG decoding mostly
    releases the GIL, so reading overlaps encoding)."""

    def read(chunk: Sequence[T]) -> tuple[list[T], list, list[tuple[T, str]]]:
        good, images, bad = [], [], []
        for item in chunk:
            try:
                images.append(load_image(path_of(item), size_hint=size_hint))
                good.append(item)
            except BadImageError as e:
                bad.append((item, str(e)))
        return good, images, bad

    chunks = list(batched(items, batch_size))
    with (
        progress_bar(len(items), desc, "img", disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=1) as reader,
    ):
        upcoming = reader.submit(read, chunks[0]) if chunks else None
        for i, chunk in enumerate(chunks):
            batch = upcoming.result()
            upcoming = reader.submit(read, chunks[i + 1]) if i + 1 < len(chunks) else None
            yield batch
            bar.update(len(chunk))
