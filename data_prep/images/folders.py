"""Reading an image folder: ``root/<class>/*.png|jpg|jpeg|bmp|gif|webp``.

Class ``k`` is the ``k``-th class directory in sorted order. Images are converted to grey (``L``)
or RGB: ``channels=0`` (auto) picks grey when every image is grey (modes 1, L, LA, I, I;16, F) and
RGB otherwise. All images must have the same size unless ``resize=(H, W)`` is given (Pillow
bilinear resize). A file that cannot be opened or decoded is recorded in ``errors`` as
``(path, reason)``; the build reports them (and fails unless told to skip them).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_prep.errors import PrepError

__all__ = ["EXTENSIONS", "FolderSource", "read_folder"]

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "P;L"}


@dataclass
class FolderSource:
    root: Path
    files: list[Path]  # relative to root
    labels: np.ndarray
    class_names: list[str]
    channels: int
    size: tuple[int, int]  # (H, W)
    resize: bool
    errors: list[tuple[str, str]] = field(default_factory=list)  # header errors found while scanning

    kind = "folder"

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.size[0], self.size[1], self.channels)

    def __len__(self) -> int:
        return len(self.files)

    def ids(self) -> list[str]:
        return [f.as_posix() for f in self.files]

    def _decode(self, rel: Path) -> np.ndarray:
        from PIL import Image

        with Image.open(self.root / rel) as im:
            im = im.convert("L" if self.channels == 1 else "RGB")
            if self.resize and im.size != (self.size[1], self.size[0]):
                im = im.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.shape != self.shape:
            raise ValueError(f"decodes to {arr.shape}, expected {self.shape}")
        return arr

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        """Decoded images of ``indices`` that could be decoded, their labels, and the failures."""
        out, labels, errors = [], [], []
        for i in indices:
            rel = self.files[int(i)]
            try:
                out.append(self._decode(rel))
            except Exception as e:  # noqa: BLE001 - Pillow raises many types for a bad file
                errors.append((str(self.root / rel), f"{type(e).__name__}: {e}"))
                continue
            labels.append(self.labels[int(i)])
        images = np.stack(out) if out else np.zeros((0, *self.shape), dtype=np.uint8)
        return images, np.array(labels, dtype=np.int64), errors

    def describe(self) -> dict:
        """The root and one SHA-256 over (relative path, file SHA-256) of every image, in order."""
        h = hashlib.sha256()
        for rel in self.files:
            fh = hashlib.sha256((self.root / rel).read_bytes()).hexdigest()
            h.update(f"{rel.as_posix()}\t{fh}\n".encode())
        return {"kind": self.kind, "n_images": len(self), "files": [{"path": str(self.root), "sha256": h.hexdigest()}]}


def read_folder(root: Path | str, channels: int = 0, resize: tuple[int, int] | None = None) -> FolderSource:
    """Scan ``root/<class>/`` (headers only; pixels are decoded while the shards are written)."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise PrepError(f"{root}: not a directory (expected root/<class>/*.png)")
    if channels not in (0, 1, 3):
        raise PrepError(f"channels {channels}: expected 0 (auto), 1 or 3")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise PrepError(f"{root}: no class directories (expected root/<class>/*.png)")
    files: list[Path] = []
    labels: list[int] = []
    modes: set[str] = set()
    sizes: Counter[tuple[int, int]] = Counter()
    first_of_size: dict[tuple[int, int], Path] = {}
    errors: list[tuple[str, str]] = []
    for k, d in enumerate(class_dirs):
        for p in sorted(d.rglob("*")):
            if not p.is_file() or p.suffix.lower() not in EXTENSIONS:
                continue
            try:
                with Image.open(p) as im:
                    modes.add(im.mode)
                    hw = (im.size[1], im.size[0])
            except (OSError, UnidentifiedImageError, ValueError) as e:
                errors.append((str(p), f"{type(e).__name__}: {e}"))
                continue
            sizes[hw] += 1
            first_of_size.setdefault(hw, p)
            files.append(p.relative_to(root))
            labels.append(k)
    if not files and not errors:
        raise PrepError(f"{root}: no image files ({', '.join(EXTENSIONS)}) in the class directories")
    if channels == 0:
        channels = 1 if modes <= _GREY_MODES else 3
    if resize is not None:
        size, do_resize = (int(resize[0]), int(resize[1])), True
    elif sizes:
        size, do_resize = sizes.most_common(1)[0][0], False
        if len(sizes) > 1:
            odd = [hw for hw in sizes if hw != size][0]
            raise PrepError(
                f"{root}: images have {len(sizes)} different sizes (most are {size[0]}x{size[1]}, but e.g. "
                f"{first_of_size[odd]} is {odd[0]}x{odd[1]}); pass --resize HxW"
            )
    else:
        size, do_resize = (1, 1), False
    return FolderSource(
        root, files, np.array(labels, dtype=np.int64), [d.name for d in class_dirs], channels, size, do_resize, errors
    )
