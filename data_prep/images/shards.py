"""Writing image shards and their manifest (read back by :class:`megagrow.data.images.ImageShards`).

Layout of an output directory::

    manifest.json              written last, atomically: its presence means the dataset is complete
    train-00000.arrow ...      Arrow IPC file format, one row per image: image, label: int64
    validation-00000.arrow

Encoding (``encoding="auto"``): images of at most :data:`RAW_MAX_BYTES` bytes (64x64 grey, 36x36
RGB) are stored ``raw`` (uint8 pixels, memory-mapped, zero decode cost: MNIST is 47 MB for 60k
images), larger ones as ``png`` (Pillow, lossless; typically 2-4x smaller than raw for photos, at a
decode cost per sample). Either can be forced.

Splits: with a separate validation source (MNIST: its 10k test images) the sources give the splits;
otherwise an image goes to validation when the SHA-256 of its id (the file path relative to the
folder, or the index in an IDX/npz file) read as a fraction of 2^64 is below ``val_fraction``
(:func:`data_prep.shards.split_of`), so its split never changes when others are added.

Per-channel mean/std are of pixel/255 over the training split, computed exactly with integer sums.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from data_prep.atomic import TMP_SUFFIX, atomic_path, sha256_file, write_json_atomic
from data_prep.errors import PrepError
from data_prep.shards import split_of
from megagrow.data.images import ENCODINGS, FORMAT, MANIFEST_NAME, SPLITS, VERSION, image_schema

__all__ = ["RAW_MAX_BYTES", "ImageBuildSettings", "ImageShardWriter", "ImageSource", "build_images"]

log = logging.getLogger(__name__)

RAW_MAX_BYTES = 4096
_CHUNK = 4096  # images per read / record batch
_MAX_REPORTED = 10


class ImageSource(Protocol):
    kind: str
    labels: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]: ...

    def __len__(self) -> int: ...

    def ids(self) -> list[str]: ...

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]: ...

    def describe(self) -> dict: ...


@dataclass(frozen=True)
class ImageBuildSettings:
    val_fraction: float = 0.1
    """Share of images (by id hash) put in validation when there is no separate validation source."""
    encoding: str = "auto"
    shard_bytes: int = 256 << 20
    """Start a new shard after this many bytes of image data."""
    skip_bad: bool = False
    """Leave out undecodable images (counted, listed in the manifest) instead of failing."""

    def validate(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise PrepError(f"--val-fraction {self.val_fraction}: expected a number in [0, 1)")
        if self.encoding not in ("auto", *ENCODINGS):
            raise PrepError(f"--encoding {self.encoding}: expected auto, raw or png")
        if self.shard_bytes < 1:
            raise PrepError(f"shard_bytes {self.shard_bytes}: expected a positive number (--shard-mb N: N MB)")


def encode_png(img: np.ndarray) -> bytes:
    """uint8 [H, W, C] -> PNG bytes (lossless)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


class ImageShardWriter:
    """Writes ``<split>-NNNNN.arrow`` files atomically; ``files`` lists the finished ones."""

    def __init__(self, out_dir: Path, split: str, encoding: str, shape: tuple[int, int, int], shard_bytes: int):
        self.out_dir, self.split, self.encoding, self.shape = out_dir, split, encoding, shape
        self.schema = image_schema(encoding, shape)
        self.shard_bytes = shard_bytes
        self.files: list[dict[str, Any]] = []
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._final: Path | None = None
        self._tmp: Path | None = None
        self._n = self._bytes = 0

    def _open(self) -> None:
        self._final = self.out_dir / f"{self.split}-{len(self.files):05d}.arrow"
        self._tmp = self._final.with_name(self._final.name + TMP_SUFFIX)
        self._writer = pa.ipc.new_file(str(self._tmp), self.schema)
        self._n = self._bytes = 0

    def add(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Append uint8 images [n, H, W, C] with int64 labels [n] as one record batch."""
        if len(images) == 0:
            return
        if self._writer is None:
            self._open()
        if self.encoding == "raw":
            data = np.ascontiguousarray(images, dtype=np.uint8)
            col = pa.FixedSizeBinaryArray.from_buffers(
                self.schema.field("image").type, len(data), [None, pa.py_buffer(data.tobytes())]
            )
            nbytes = data.nbytes
        else:
            encoded = [encode_png(img) for img in images]
            col = pa.array(encoded, type=pa.binary())
            nbytes = sum(len(b) for b in encoded)
        batch = pa.record_batch([col, pa.array(np.asarray(labels, dtype=np.int64))], schema=self.schema)
        assert self._writer is not None
        self._writer.write_batch(batch)
        self._n += len(images)
        self._bytes += nbytes
        if self._bytes >= self.shard_bytes:
            self._close()

    def _close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        assert self._final is not None and self._tmp is not None
        with atomic_path(self._final) as part:
            self._tmp.replace(part)
        self.files.append(
            {
                "path": self._final.name,
                "bytes": self._final.stat().st_size,
                "sha256": sha256_file(self._final),
                "n_images": self._n,
            }
        )
        self._writer = None

    def finish(self) -> list[dict[str, Any]]:
        if self._writer is None and not self.files:
            self._open()  # an empty split still gets one (empty) shard file
        self._close()
        return self.files

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)


def _prepare_out_dir(out: Path) -> None:
    """Make ``out`` ready for a build: new, empty, or a previous image build (whose files are removed)."""
    if out.exists() and not out.is_dir():
        raise PrepError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST_NAME
    ours = [p for p in out.iterdir() if p.suffix == ".arrow" or p.name.endswith(TMP_SUFFIX)]
    others = [p for p in out.iterdir() if p not in ours and p != manifest]
    if others or (manifest.exists() and f'"{FORMAT}"' not in manifest.read_text(encoding="utf-8", errors="replace")):
        raise PrepError(
            f"--out {out}: not empty and not a previous `megagrow-prep images` output "
            f"(found {sorted(p.name for p in others)[:5] or [MANIFEST_NAME]}); choose another directory"
        )
    manifest.unlink(missing_ok=True)  # first: from here on the directory is incomplete
    for p in ours:
        p.unlink()


def _choose_encoding(settings: ImageBuildSettings, shape: tuple[int, int, int]) -> str:
    if settings.encoding != "auto":
        return settings.encoding
    return "raw" if int(np.prod(shape)) <= RAW_MAX_BYTES else "png"


def _report_bad(bad: list[tuple[str, str]], skip: bool) -> None:
    if not bad:
        return
    listing = "\n".join(f"  {p}: {why}" for p, why in bad[:_MAX_REPORTED])
    more = f"\n  ... and {len(bad) - _MAX_REPORTED} more" if len(bad) > _MAX_REPORTED else ""
    if not skip:
        raise PrepError(
            f"{len(bad)} image file(s) cannot be decoded:\n{listing}{more}\n"
            "fix or remove them, or pass --skip-bad to leave them out (they are then listed in the manifest)"
        )
    log.warning("left out %d undecodable image file(s):\n%s%s", len(bad), listing, more)


def build_images(
    out: Path,
    train_source: ImageSource,
    val_source: ImageSource | None = None,
    settings: ImageBuildSettings | None = None,
    class_names: list[str] | None = None,
    notes: str | None = None,
    dataset_name: str | None = None,
) -> dict[str, Any]:
    """Write the shards and manifest of a dataset into ``out``; the manifest (a dict).

    ``train_source`` gives the training split, ``val_source`` the validation split; without
    ``val_source`` the training source is split by ``settings.val_fraction``.
    """
    settings = settings or ImageBuildSettings()
    settings.validate()
    t0 = time.perf_counter()
    out = Path(out)
    shape = tuple(int(s) for s in train_source.shape)
    if val_source is not None and tuple(val_source.shape) != shape:
        raise PrepError(f"the validation images are {tuple(val_source.shape)}, the training images {shape}")
    names = class_names or getattr(train_source, "class_names", None)
    all_labels = [train_source.labels] + ([val_source.labels] if val_source is not None else [])
    n_label = max((int(lab.max()) + 1 for lab in all_labels if len(lab)), default=0)
    if names is None:
        names = [str(i) for i in range(n_label)]
    if val_source is not None and getattr(val_source, "class_names", None) not in (None, names):
        raise PrepError(f"the validation classes {val_source.class_names} differ from the training ones {names}")
    if n_label > len(names):
        raise PrepError(f"labels go up to {n_label - 1} but there are only {len(names)} class names")
    encoding = _choose_encoding(settings, shape)
    _prepare_out_dir(out)

    # (source, indices) per split
    plan: dict[str, list[tuple[ImageSource, np.ndarray]]] = {s: [] for s in SPLITS}
    if val_source is not None:
        plan["train"].append((train_source, np.arange(len(train_source))))
        plan["validation"].append((val_source, np.arange(len(val_source))))
    else:
        is_val = np.array([split_of(i, settings.val_fraction) == "validation" for i in train_source.ids()], bool)
        plan["train"].append((train_source, np.flatnonzero(~is_val)))
        if settings.val_fraction > 0:
            if not is_val.any():
                raise PrepError(
                    f"the validation split is empty: none of the {len(train_source)} images hashed below "
                    f"--val-fraction {settings.val_fraction}; raise it (or set it to 0 for no validation split)"
                )
            plan["validation"].append((train_source, np.flatnonzero(is_val)))
    header_bad: list[tuple[str, str]] = list(getattr(train_source, "errors", []))
    if val_source is not None:
        header_bad += list(getattr(val_source, "errors", []))
    _report_bad(header_bad, settings.skip_bad)  # unreadable files: fail before writing anything
    bad: list[tuple[str, str]] = []  # files whose pixels cannot be decoded

    channels = shape[2]
    s1 = np.zeros(channels, dtype=np.int64)
    s2 = np.zeros(channels, dtype=np.int64)
    n_pixels = 0
    splits: dict[str, Any] = {}
    for split, parts in plan.items():
        if not parts:
            continue
        writer = ImageShardWriter(out, split, encoding, shape, settings.shard_bytes)
        counts = np.zeros(len(names), dtype=np.int64)
        try:
            for source, indices in parts:
                for start in range(0, len(indices), _CHUNK):
                    images, labels, errors = source.read(indices[start : start + _CHUNK])
                    bad += errors
                    writer.add(images, labels)
                    counts += np.bincount(labels, minlength=len(names))
                    if split == "train":
                        flat = images.reshape(-1, channels).astype(np.int64)
                        s1 += flat.sum(axis=0)
                        s2 += (flat * flat).sum(axis=0)
                        n_pixels += len(flat)
            files = writer.finish()
        except BaseException:
            writer.abort()
            raise
        splits[split] = {
            "n_images": int(sum(f["n_images"] for f in files)),
            "bytes": int(sum(f["bytes"] for f in files)),
            "label_counts": counts.tolist(),
            "files": files,
        }
    _report_bad(bad, settings.skip_bad)  # the manifest is not written: the directory stays incomplete
    bad = header_bad + bad
    if n_pixels == 0:
        raise PrepError("the training split has no images")
    mean = s1 / n_pixels / 255.0
    std = np.sqrt(np.maximum(s2 / n_pixels / 255.0**2 - mean**2, 0.0))
    std = np.where(std > 0, std, 1.0)
    sources = [dict(train_source.describe(), role="train" if val_source is not None else "train+validation")]
    if val_source is not None:
        sources.append(dict(val_source.describe(), role="validation"))
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "name": dataset_name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "encoding": encoding,
        "image_shape": list(shape),
        "num_classes": len(names),
        "class_names": names,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "stats": "per-channel mean/std of pixel/255 over the training split",
        "splits": splits,
        "sources": sources,
        "settings": asdict(settings),
        "skipped": {"count": len(bad), "files": [{"path": p, "reason": why} for p, why in bad]},
        "notes": notes,
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    write_json_atomic(out / MANIFEST_NAME, manifest)
    return manifest
