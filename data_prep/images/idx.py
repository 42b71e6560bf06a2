"""Reading IDX files (MNIST, Fashion-MNIST, EMNIST, ...).

Format: bytes 0-1 zero, byte 2 the data type (0x08 unsigned byte, 0x09 signed byte, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64, all big-endian), byte 3 the number of dimensions ``n``,
then ``n`` big-endian uint32 sizes, then the data in C order. Files ending in ``.gz`` are
decompressed in memory; others are memory-mapped.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.errors import PrepError

__all__ = ["IDX_DTYPES", "IdxSource", "read_idx", "read_idx_pair"]

IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: Path | str) -> np.ndarray:
    """The array stored in the IDX file ``path`` (read-only; memory-mapped unless gzipped)."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data: bytes | np.ndarray = f.read()
        else:
            data = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else b""
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise PrepError(f"{path}: cannot read the IDX file ({e})") from e
    size = len(data)
    if size < 4:
        raise PrepError(f"{path}: not an IDX file ({size} bytes, shorter than the 4-byte header)")
    head = bytes(data[:4])
    if head[0] != 0 or head[1] != 0:
        raise PrepError(f"{path}: not an IDX file (the first two bytes are {head[:2].hex()}, expected 0000)")
    if head[2] not in IDX_DTYPES:
        raise PrepError(
            f"{path}: unknown IDX data type 0x{head[2]:02x} (expected one of "
            f"{', '.join(f'0x{k:02x}' for k in IDX_DTYPES)})"
        )
    ndim = head[3]
    if ndim < 1:
        raise PrepError(f"{path}: IDX header declares 0 dimensions")
    offset = 4 + 4 * ndim
    if size < offset:
        raise PrepError(f"{path}: IDX header declares {ndim} dimensions but the file has only {size} bytes")
    dims = tuple(int(d) for d in np.frombuffer(bytes(data[4:offset]), dtype=">u4"))
    dtype = IDX_DTYPES[head[2]]
    expected = offset + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if size != expected:
        raise PrepError(
            f"{path}: IDX header says {dtype} data of shape {dims} ({expected} bytes with the header), "
            f"the file has {size} bytes (truncated or corrupt)"
        )
    if isinstance(data, np.ndarray):
        arr = data[offset:].view(dtype).reshape(dims)
    else:
        arr = np.frombuffer(data, dtype=dtype, offset=offset).reshape(dims)
    return arr


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class IdxSource:
    """An image IDX file and its label IDX file: uint8 images [N, H, W, C], int64 labels [N]."""

    images_path: Path
    labels_path: Path
    images: np.ndarray
    labels: np.ndarray

    kind = "idx"

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.labels)

    def ids(self) -> list[str]:
        """Stable ids for the validation hash: the image's index in the file."""
        return [str(i) for i in range(len(self))]

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        return np.asarray(self.images[indices]), self.labels[indices], []

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "n_images": len(self),
            "files": [{"path": str(p), "sha256": _sha256(p)} for p in (self.images_path, self.labels_path)],
        }


def read_idx_pair(images_path: Path | str, labels_path: Path | str) -> IdxSource:
    """Open an image IDX file ([N, H, W] or [N, H, W, C], unsigned bytes) and its labels ([N])."""
    images_path, labels_path = Path(images_path), Path(labels_path)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise PrepError(
            f"{images_path}: expected unsigned-byte images of shape [N, H, W] or [N, H, W, C], "
            f"got {images.dtype} {images.shape}"
        )
    if images.ndim == 3:
        images = images[:, :, :, None]
    if images.shape[3] not in (1, 3):
        raise PrepError(f"{images_path}: {images.shape[3]} channels, expected 1 or 3")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise PrepError(f"{labels_path}: expected integer labels of shape [N], got {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise PrepError(
            f"{labels_path}: {len(labels)} labels for the {len(images)} images of {images_path} (count mismatch)"
        )
    labels = labels.astype(np.int64)
    if len(labels) and labels.min() < 0:
        raise PrepError(f"{labels_path}: negative label {labels.min()}")
    return IdxSource(images_path, labels_path, images, labels)
