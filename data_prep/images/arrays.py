"""Reading images from a numpy ``.npz`` file.

The file holds ``images`` uint8 [N, H, W] (grey) or [N, H, W, C] with C 1 or 3, and ``labels``
integers [N] (>= 0); optionally ``class_names`` (strings, one per class).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.atomic import sha256_file
from data_prep.errors import PrepError

__all__ = ["NpzSource", "read_npz"]


@dataclass
class NpzSource:
    path: Path
    images: np.ndarray
    labels: np.ndarray
    class_names: list[str] | None

    kind = "npz"

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.labels)

    def ids(self) -> list[str]:
        return [str(i) for i in range(len(self))]

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        return self.images[indices], self.labels[indices], []

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "n_images": len(self),
            "files": [{"path": str(self.path), "sha256": sha256_file(self.path)}],
        }


def read_npz(path: Path | str) -> NpzSource:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("images", "labels") if k not in z.files]
            if missing:
                raise PrepError(f"{path}: missing array(s) {missing}; the file has {sorted(z.files)}")
            images, labels = z["images"], z["labels"]
            names = [str(c) for c in z["class_names"].tolist()] if "class_names" in z.files else None
    except PrepError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise PrepError(f"{path}: cannot read the .npz file ({e})") from e
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise PrepError(f"{path}: 'images' must be uint8 [N, H, W] or [N, H, W, C], got {images.dtype} {images.shape}")
    if images.ndim == 3:
        images = images[:, :, :, None]
    if images.shape[3] not in (1, 3):
        raise PrepError(f"{path}: 'images' has {images.shape[3]} channels, expected 1 or 3")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise PrepError(f"{path}: 'labels' must be integers [N], got {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise PrepError(f"{path}: {len(labels)} labels for {len(images)} images (count mismatch)")
    labels = labels.astype(np.int64)
    if len(labels) and labels.min() < 0:
        raise PrepError(f"{path}: negative label {labels.min()}")
    if names is not None and len(labels) and labels.max() >= len(names):
        raise PrepError(f"{path}: label {labels.max()} but only {len(names)} class_names")
    return NpzSource(path, np.ascontiguousarray(images), labels, names)
