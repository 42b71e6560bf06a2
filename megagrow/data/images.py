"""Prepared image datasets (the output of ``megagrow-prep images``): reader, dataset, augmentation.

A directory holds ``manifest.json`` (format ``megagrow-images``, version 1, written last) and per
split the Arrow IPC files ``<split>-NNNNN.arrow``, one row per image: ``image`` and ``label: int64``.
The ``image`` column depends on the manifest's ``encoding``:

* ``raw``: ``fixed_size_binary(H*W*C)``, the uint8 pixels in H, W, C order. Memory-mapped and read
  with zero copies. Used for small images (MNIST: 784 bytes each, 47 MB for the 60k training images),
  where decoding costs more than the space saved.
* ``png``: ``binary``, one PNG file per row, decoded with Pillow on access. Used for larger images,
  where PNG is typically 2-4x smaller than raw pixels.

All images of a dataset have the same shape ``image_shape = [H, W, C]`` (C = 1 grey, 3 RGB). The
manifest also records the per-channel ``mean``/``std`` of the training split (pixel / 255), the
class names and the sources with their SHA-256.

:class:`ImageShards` opens one split (validating the manifest against the files) and
:class:`ImageDataset` turns it into normalised float32 ``[in_chans, image_size, image_size]`` samples
with DeiT-style training augmentation (random resized crop, optional horizontal flip), drawn from
``Generator(PCG64([seed, key]))`` only. :func:`mix_batch` applies mixup / cutmix to a collated batch.

This module defines the format (the writer, ``data_prep.images``, imports its constants) and does not
depend on ``data_prep``.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from megagrow.data.manifest import MANIFEST_NAME, ManifestError, field, open_shard, read_json, sha256_file, split_files

__all__ = [
    "ENCODINGS",
    "FORMAT",
    "MANIFEST_NAME",
    "SPLITS",
    "VERSION",
    "ImageDataset",
    "ImageShardError",
    "ImageShardFile",
    "ImageShards",
    "image_schema",
    "mix_batch",
    "resize_matrix",
]

FORMAT = "megagrow-images"
VERSION = 1
SPLITS = ("train", "validation")
ENCODINGS = ("raw", "png")


def image_schema(encoding: str, shape: tuple[int, int, int]) -> pa.Schema:
    """The Arrow schema of the shards of a dataset with this encoding and image shape."""
    if encoding == "raw":
        image_type = pa.binary(int(np.prod(shape)))
    elif encoding == "png":
        image_type = pa.binary()
    else:
        raise ValueError(f"unknown image encoding {encoding!r}; expected one of {ENCODINGS}")
    return pa.schema([("image", image_type), ("label", pa.int64())])


class ImageShardError(ManifestError):
    """A prepared image dataset is missing, incomplete, or does not match its manifest."""


@dataclass(frozen=True)
class ImageShardFile:
    """A shard as listed in the manifest; ``path`` is relative to the dataset directory."""

    path: str
    bytes: int
    sha256: str
    n_images: int


_field = partial(field, error=ImageShardError)
_FILE_FIELDS = {"path": str, "bytes": int, "sha256": str, "n_images": int}


def _floats(obj: dict[str, Any], key: str, n: int, where: str, positive: bool = False) -> tuple[float, ...]:
    values = _field(obj, key, list, where)
    ok = len(values) == n and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if not ok or (positive and min(values) <= 0):
        raise ImageShardError(f"{where}: {key} is {values!r}, expected {n} {'positive ' if positive else ''}numbers")
    return tuple(float(v) for v in values)


class ImageShards:
    """One split of a prepared image dataset, memory-mapped.

    Attributes: ``data_dir``, ``split``, ``manifest``, ``encoding``, ``image_shape`` (H, W, C),
    ``num_classes``, ``class_names``, ``mean``/``std`` (per channel, of pixel/255 on the training
    split), ``files`` (:class:`ImageShardFile` list). ``labels`` is an int64 array of all labels.
    """

    def __init__(self, data_dir: Path, split: str, manifest: dict[str, Any]):
        """Use :meth:`open`, which checks the format and version first."""
        self.data_dir = data_dir
        self.split = split
        self.manifest = manifest
        where = str(data_dir / MANIFEST_NAME)
        self.encoding = _field(manifest, "encoding", str, where)
        if self.encoding not in ENCODINGS:
            raise ImageShardError(f"{where}: encoding {self.encoding!r}, expected one of {ENCODINGS}")
        shape = _field(manifest, "image_shape", list, where)
        if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape) or shape[2] not in (1, 3):
            raise ImageShardError(f"{where}: image_shape is {shape!r}, expected [H, W, C] with C 1 or 3")
        self.image_shape: tuple[int, int, int] = (shape[0], shape[1], shape[2])
        self.num_classes = _field(manifest, "num_classes", int, where)
        self.class_names = [str(c) for c in _field(manifest, "class_names", list, where)]
        if self.num_classes < 1 or len(self.class_names) != self.num_classes:
            raise ImageShardError(
                f"{where}: num_classes {self.num_classes} does not match {len(self.class_names)} class_names"
            )
        channels = self.image_shape[2]
        self.mean = _floats(manifest, "mean", channels, where)
        self.std = _floats(manifest, "std", channels, where, positive=True)
        entry, files = split_files(manifest, split, where, _FILE_FIELDS, ImageShardError)
        self.files: list[ImageShardFile] = [ImageShardFile(**f) for f in files]
        self._schema = image_schema(self.encoding, self.image_shape)
        self._images: list[Any] = []  # per record batch: uint8 [n, H, W, C] (raw) or a BinaryArray (png)
        labels: list[np.ndarray] = []
        for shard in self.files:
            labels.extend(self._map(shard))
        self.labels = np.concatenate(labels).astype(np.int64, copy=False)
        self.labels.flags.writeable = False
        self._batch_start = np.concatenate([[0], np.cumsum([len(x) for x in labels], dtype=np.int64)])
        n_declared = _field(entry, "n_images", int, f"{where} splits.{split}")
        if n_declared != len(self.labels):
            raise ImageShardError(f"{where}: split {split!r} says {n_declared} images, its files hold {len(self)}")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= self.num_classes):
            raise ImageShardError(
                f"{where}: split {split!r} has labels outside [0, {self.num_classes}): "
                f"min {self.labels.min()}, max {self.labels.max()}"
            )

    @classmethod
    def open(cls, data_dir: Path | str, split: str) -> ImageShards:
        """Open split ``split`` (``"train"``, ``"validation"``) of the image dataset in ``data_dir``."""
        data_dir = Path(data_dir)
        path = data_dir / MANIFEST_NAME
        missing = (
            f"no {MANIFEST_NAME} in {data_dir}: run `megagrow-prep images mnist` or `megagrow-prep images build` first"
        )
        manifest = read_json(path, missing, ImageShardError)
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        if fmt != FORMAT:
            hint = " (a token dataset: use it with a text model)" if fmt == "megagrow-shards" else ""
            raise ImageShardError(f"{path}: format is {fmt!r}, expected {FORMAT!r}{hint}")
        if manifest.get("version") != VERSION:
            raise ImageShardError(
                f"{path}: version is {manifest.get('version')!r}, this megagrow reads version {VERSION}; "
                "rebuild the dataset with this version's megagrow-prep"
            )
        return cls(data_dir, split, manifest)

    def _map(self, shard: ImageShardFile) -> list[np.ndarray]:
        path = self.data_dir / shard.path
        reader = open_shard(path, shard.bytes, ImageShardError)
        if not reader.schema.equals(self._schema):
            raise ImageShardError(f"{path}: schema is {reader.schema}, expected {self._schema}")
        labels = []
        for b in range(reader.num_record_batches):
            batch = reader.get_batch(b)
            images, lab = batch.column(0), batch.column(1)
            if images.null_count or lab.null_count or images.offset or lab.offset:
                raise ImageShardError(f"{path}: record batch {b} has nulls or sliced columns")
            if self.encoding == "raw":
                data = np.frombuffer(images.buffers()[1], dtype=np.uint8)
                self._images.append(data[: len(batch) * int(np.prod(self.image_shape))].reshape(-1, *self.image_shape))
            else:
                self._images.append(images)
            labels.append(lab.to_numpy(zero_copy_only=True))
        n = sum(len(x) for x in labels)
        if n != shard.n_images:
            raise ImageShardError(f"{path}: holds {n} images, {MANIFEST_NAME} says {shard.n_images}")
        return labels

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 [H, W, C] (a read-only view into the mapped file for ``raw``)."""
        if not 0 <= i < len(self):
            raise IndexError(f"image {i} out of range for {len(self)} images ({self.split})")
        b = int(np.searchsorted(self._batch_start, i, side="right")) - 1
        j = i - int(self._batch_start[b])
        if self.encoding == "raw":
            return self._images[b][j]
        from PIL import Image

        data = self._images[b][j].as_buffer()
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.shape != self.image_shape or arr.dtype != np.uint8:
            raise ImageShardError(
                f"{self.data_dir}: image {i} of {self.split} decodes to {arr.dtype} {arr.shape}, "
                f"expected uint8 {self.image_shape}"
            )
        return arr

    def label(self, i: int) -> int:
        return int(self.labels[i])

    def fingerprint(self) -> str:
        """Hash of the split's shard hashes, the split name, encoding and shape."""
        h = hashlib.sha256()
        for f in self.files:
            h.update(f.sha256.encode() + b"\n")
        h.update(repr((self.split, self.encoding, self.image_shape, self.num_classes)).encode())
        return "images-" + h.hexdigest()[:16]

    def verify(self) -> None:
        """Hash every shard of the split; :class:`ImageShardError` on a mismatch."""
        for f in self.files:
            path = self.data_dir / f.path
            actual = sha256_file(path)
            if actual != f.sha256:
                raise ImageShardError(f"{path}: SHA-256 is {actual}, {MANIFEST_NAME} says {f.sha256}")


# ------------------------------------------------------------------------------------------------
# Geometry: crop + resize as two small interpolation matrices (numpy only)


def resize_matrix(in_size: int, out_size: int, start: float = 0.0, length: float | None = None) -> np.ndarray:
    """float32 [out_size, in_size] weights resampling the window ``[start, start + length)`` of a 1-D
    signal of ``in_size`` pixels to ``out_size`` pixels.

    Bilinear with half-pixel centres (``align_corners=False``); when shrinking, the triangle filter is
    widened by the scale factor (antialiasing, like Pillow's bilinear resize). Source positions
    outside ``[0, in_size)`` get no weight (the filter is truncated and renormalised). Rows sum to 1.
    """
    length = float(in_size) if length is None else float(length)
    scale = length / out_size  # source pixels per output pixel
    support = max(scale, 1.0)
    centers = start + (np.arange(out_size) + 0.5) * scale - 0.5  # in source pixel coordinates
    lo = np.floor(centers - support).astype(np.int64)
    taps = int(math.ceil(2 * support)) + 2
    idx = lo[:, None] + np.arange(taps)[None, :]
    w = np.maximum(0.0, 1.0 - np.abs(idx - centers[:, None]) / support)
    w[(idx < 0) | (idx >= in_size)] = 0.0  # truncate the filter at the borders (as Pillow / torch)
    w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    m = np.zeros((out_size, in_size), dtype=np.float32)
    rows = np.arange(out_size)
    cols = np.clip(idx, 0, in_size - 1)
    for t in range(taps):  # within one tap each row has one column: += does not lose duplicates
        m[rows, cols[:, t]] += w[:, t]
    return m


def _crop_resize(img: np.ndarray, top: float, left: float, h: float, w: float, out: int) -> np.ndarray:
    """float32 [C, H, W] -> [C, out, out]: the box (top, left, h, w) resampled to out x out."""
    my = resize_matrix(img.shape[1], out, top, h)
    mx = resize_matrix(img.shape[2], out, left, w)
    return np.matmul(np.matmul(my, img), mx.T)


def _random_resized_crop_box(
    rng: np.random.Generator, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params with a numpy generator: (top, left, h, w)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    # Fallback: the whole image, clamped to the ratio range, centred.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class ImageDataset:
    """Samples of an :class:`ImageShards` split for a DeiT/ViT: implements ``SampleDataset``.

    ``get(index, key)`` returns ``images`` float32 [in_chans, image_size, image_size], normalised with
    the manifest's per-channel mean/std (or ``mean``/``std`` given here), and ``labels`` int64 scalar.

    Channels: a grey dataset is repeated ``in_chans`` (3) times; an RGB one is converted to grey
    (ITU-R 601 luma) for ``in_chans=1``.

    Geometry, with ``S = image_size``:

    * images no larger than S (MNIST 28 -> 32) are first zero-padded (black, before normalisation)
      to S x S, centred; larger ones are kept as they are;
    * evaluation (``train=False``): a padded image is used as is; a larger one is resized (short side
      to ``S / eval_crop_pct``, antialiased bilinear) and centre-cropped to S x S (DeiT: 0.875);
    * training (``train=True``): a random resized crop of the (padded) image with area fraction in
      ``scale`` and aspect ratio in ``ratio`` (log-uniform), resized to S x S, then a horizontal flip
      with probability 0.5 if ``hflip``. With ``augment=False`` training samples are the evaluation
      ones. Everything random comes from ``Generator(PCG64([seed, key]))``.

    DeiT's ImageNet defaults are ``scale=(0.08, 1)`` and ``hflip=True``; for small digits use a milder
    ``scale=(0.5, 1)`` and ``hflip=False`` (a flipped digit is another glyph).
    """

    def __init__(
        self,
        shards: ImageShards,
        image_size: int,
        in_chans: int,
        train: bool,
        seed: int = 0,
        *,
        augment: bool = True,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: bool = False,
        eval_crop_pct: float = 0.875,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ):
        if image_size < 1:
            raise ValueError(f"ImageDataset: image_size must be >= 1, got {image_size}")
        if in_chans not in (1, 3):
            raise ValueError(f"ImageDataset: in_chans must be 1 or 3, got {in_chans}")
        if seed < 0:
            raise ValueError(f"ImageDataset: seed must be >= 0, got {seed}")
        if not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ValueError(f"ImageDataset: scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not 0.0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ImageDataset: ratio must satisfy 0 < min <= max, got {ratio}")
        if not 0.0 < eval_crop_pct <= 1.0:
            raise ValueError(f"ImageDataset: eval_crop_pct must be in (0, 1], got {eval_crop_pct}")
        if len(shards) == 0:
            raise ValueError(f"ImageDataset: split {shards.split!r} of {shards.data_dir} has no images")
        self.shards = shards
        self.image_size = int(image_size)
        self.in_chans = int(in_chans)
        self.train = bool(train)
        self.seed = int(seed)
        self.augment = bool(augment) and self.train
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.hflip = bool(hflip)
        self.eval_crop_pct = float(eval_crop_pct)
        src_c = shards.image_shape[2]
        mean = tuple(shards.mean) if mean is None else tuple(float(m) for m in mean)
        std = tuple(shards.std) if std is None else tuple(float(s) for s in std)
        if len(mean) != src_c or len(std) != src_c or min(std) <= 0:
            raise ValueError(f"ImageDataset: mean {mean} / std {std} must have {src_c} entries (std > 0)")
        # Statistics in the model's channel space.
        if src_c == in_chans:
            m, s = np.array(mean), np.array(std)
        elif src_c == 1:
            m, s = np.full(in_chans, mean[0]), np.full(in_chans, std[0])
        else:  # RGB -> grey: mean is exact; std approximated by the luma-weighted channel stds
            luma = np.array([0.299, 0.587, 0.114])
            m, s = np.array([luma @ np.array(mean)]), np.array([luma @ np.array(std)])
        self.mean = m.astype(np.float32).reshape(-1, 1, 1)
        self.std = s.astype(np.float32).reshape(-1, 1, 1)
        self._fingerprint = hashlib.sha256(
            repr(
                (
                    "image-dataset",
                    shards.fingerprint(),
                    self.image_size,
                    self.in_chans,
                    self.train,
                    self.seed,
                    self.augment,
                    self.scale,
                    self.ratio,
                    self.hflip,
                    self.eval_crop_pct,
                    [round(float(x), 8) for x in self.mean.ravel()],
                    [round(float(x), 8) for x in self.std.ravel()],
                )
            ).encode()
        ).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.shards)

    def fingerprint(self) -> str:
        return self._fingerprint

    def _channels(self, x: np.ndarray) -> np.ndarray:
        """float32 [C, H, W] -> [in_chans, H, W]."""
        if x.shape[0] == self.in_chans:
            return x
        if x.shape[0] == 1:
            return np.repeat(x, self.in_chans, axis=0)
        return np.tensordot(np.array([0.299, 0.587, 0.114], dtype=np.float32), x, axes=1)[None]

    def _pad(self, x: np.ndarray) -> np.ndarray:
        """Zero-pad (centred) each spatial dimension smaller than image_size up to image_size."""
        s = self.image_size
        h, w = x.shape[1:]
        if h >= s and w >= s:
            return x
        ph, pw = max(s - h, 0), max(s - w, 0)
        return np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))

    def _eval_geometry(self, x: np.ndarray) -> np.ndarray:
        s = self.image_size
        h, w = x.shape[1:]
        if h == s and w == s:
            return x
        if h <= s and w <= s:
            return self._pad(x)
        # Resize the short side to s / crop_pct, then take the centred s x s crop: as one crop-resize
        # of the source box that maps onto that crop.
        short = min(h, w)
        factor = short / (s / self.eval_crop_pct)  # source pixels per output pixel
        box = min(s * factor, h), min(s * factor, w)
        return _crop_resize(x, (h - box[0]) / 2, (w - box[1]) / 2, box[0], box[1], s)

    def get(self, index: int, key: int) -> dict[str, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"ImageDataset: index {index} out of range [0, {len(self)})")
        # Geometry on the stored channels (fewer for grey), then to the model's channels.
        x = np.asarray(self.shards.image(index)).astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)
        if self.augment:
            if key < 0:
                raise ValueError(f"ImageDataset: key must be >= 0, got {key}")
            rng = np.random.Generator(np.random.PCG64([self.seed, key]))
            x = self._pad(x)
            top, left, h, w = _random_resized_crop_box(rng, x.shape[1], x.shape[2], self.scale, self.ratio)
            x = _crop_resize(x, top, left, h, w, self.image_size)
            if self.hflip and rng.random() < 0.5:
                x = x[:, :, ::-1]
        else:
            x = self._eval_geometry(x)
        x = (self._channels(x) - self.mean) / self.std
        return {
            "images": np.ascontiguousarray(x, dtype=np.float32),
            "labels": np.array(self.shards.label(index), dtype=np.int64),
        }


# ------------------------------------------------------------------------------------------------
# Mixup / CutMix (batch level)


def mix_batch(
    batch: dict[str, Any],
    num_classes: int,
    alpha_mixup: float,
    alpha_cutmix: float,
    rng: np.random.Generator,
    switch_prob: float = 0.5,
    label_smoothing: float = 0.0,
) -> dict[str, Any]:
    """Mixup / CutMix of a collated batch (timm's ``Mixup`` in "batch" mode), for training only.

    ``batch['images']`` [B, C, H, W] and ``batch['labels']`` [B] (int), torch tensors or numpy arrays.
    Each image is mixed with the image at the mirrored position (``flip(0)``) with one ``lam`` for
    the whole batch: with ``alpha_mixup > 0`` and ``alpha_cutmix > 0`` CutMix is chosen with
    probability ``switch_prob``; ``lam ~ Beta(alpha, alpha)``; CutMix pastes a box of area
    ``1 - lam`` and corrects ``lam`` to the exact pasted area. Both alphas 0: the batch is returned
    with one-hot soft labels and unmixed images.

    Returns a new dict: ``images`` mixed (same type and dtype), ``labels`` unchanged (hard),
    ``labels_soft`` [B, num_classes] float32 = ``lam * onehot(y) + (1 - lam) * onehot(y.flip(0))``
    (after label smoothing), rows summing to 1. ``rng`` decides
    everything; seed it from (seed, step, rank) for reproducible runs.
    """
    if alpha_mixup < 0 or alpha_cutmix < 0:
        raise ValueError(f"mix_batch: alphas must be >= 0, got mixup {alpha_mixup}, cutmix {alpha_cutmix}")
    if num_classes < 1:
        raise ValueError(f"mix_batch: num_classes must be >= 1, got {num_classes}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"mix_batch: label_smoothing must be in [0, 1), got {label_smoothing}")
    images, labels = batch["images"], batch["labels"]
    is_torch = not isinstance(images, np.ndarray)
    y = labels.detach().cpu().numpy() if is_torch else np.asarray(labels)
    y = y.astype(np.int64).reshape(-1)
    if images.shape[0] != y.shape[0] or len(images.shape) != 4:
        raise ValueError(f"mix_batch: images {tuple(images.shape)} and labels {tuple(y.shape)} do not match")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"mix_batch: labels outside [0, {num_classes})")

    use_cutmix = False
    lam = 1.0
    if alpha_mixup > 0 and alpha_cutmix > 0:
        use_cutmix = bool(rng.random() < switch_prob)
        lam = float(rng.beta(alpha_cutmix, alpha_cutmix) if use_cutmix else rng.beta(alpha_mixup, alpha_mixup))
    elif alpha_mixup > 0:
        lam = float(rng.beta(alpha_mixup, alpha_mixup))
    elif alpha_cutmix > 0:
        use_cutmix = True
        lam = float(rng.beta(alpha_cutmix, alpha_cutmix))

    out = dict(batch)
    if lam < 1.0:
        flipped = images.flip(0) if is_torch else images[::-1]
        if use_cutmix:
            h, w = images.shape[-2:]
            cut = math.sqrt(1.0 - lam)
            ch, cw = int(h * cut), int(w * cut)
            cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
            y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
            x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
            mixed = images.clone() if is_torch else images.copy()
            mixed[:, :, y0:y1, x0:x1] = flipped[:, :, y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
        else:
            mixed = images * lam + flipped * (1.0 - lam)
        out["images"] = mixed
    off = label_smoothing / num_classes
    on = 1.0 - label_smoothing + off
    onehot = np.full((y.size, num_classes), off, dtype=np.float64)
    onehot[np.arange(y.size), y] = on
    soft = (lam * onehot + (1.0 - lam) * onehot[::-1]).astype(np.float32)
    if is_torch:
        import torch

        out["labels_soft"] = torch.from_numpy(soft).to(images.device)
    else:
        out["labels_soft"] = soft
    return out
