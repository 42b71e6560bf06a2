"""What the readers of prepared datasets share: file hashing, manifest reading and validation,
and the checks of a shard file against its manifest entry.

Used by :mod:`megagrow.data.shards` (token datasets) and :mod:`megagrow.data.images`; the writers in
``data_prep`` hash with :func:`sha256_file` too. This module does not depend on ``data_prep``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa

__all__ = ["MANIFEST_NAME", "ManifestError", "field", "open_shard", "read_json", "sha256_file", "split_files"]

MANIFEST_NAME = "manifest.json"


class ManifestError(ValueError):
    """A prepared dataset is missing, incomplete, or does not match its manifest."""


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's contents, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def field(
    obj: Any, key: str, kind: type | tuple[type, ...], where: str, error: type[ManifestError] = ManifestError
) -> Any:
    """``obj[key]`` if ``obj`` is a dict holding it as a ``kind`` (a bool is no ``int``); else ``error``
    naming ``where``, the key and what was found."""
    if not isinstance(obj, dict) or key not in obj:
        raise error(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise error(f"{where}: field {key!r} is {value!r}, expected {getattr(kind, '__name__', kind)}")
    return value


def read_json(path: Path, missing: str, error: type[ManifestError] = ManifestError) -> Any:
    """The parsed JSON of the manifest ``path``; ``error(missing)`` if there is no such file."""
    if not path.is_file():
        raise error(missing)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path}: cannot read the manifest ({e})") from e


def split_files(
    manifest: Any, split: str, where: str, fields: dict[str, type], error: type[ManifestError] = ManifestError
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest's entry for ``split`` and its non-empty ``files`` list, each file's ``fields``
    checked (in order) with :func:`field`."""
    splits = field(manifest, "splits", dict, where, error)
    if split not in splits:
        raise error(f"{where}: no split {split!r}; the dataset has {sorted(splits)}")
    entry = field(splits, split, dict, f"{where} splits", error)
    files = []
    for k, f in enumerate(field(entry, "files", list, f"{where} splits.{split}", error)):
        at = f"{where} splits.{split}.files[{k}]"
        files.append({key: field(f, key, kind, at, error) for key, kind in fields.items()})
    if not files:
        raise error(f"{where}: split {split!r} lists no files")
    return entry, files


def open_shard(path: Path, size: int, error: type[ManifestError] = ManifestError) -> pa.ipc.RecordBatchFileReader:
    """The memory-mapped Arrow IPC file ``path``, once it is there with the ``size`` bytes the manifest says."""
    if not path.is_file():
        raise error(f"{path}: shard listed in {MANIFEST_NAME} is missing")
    actual = path.stat().st_size
    if actual != size:
        raise error(f"{path}: size is {actual} bytes, {MANIFEST_NAME} says {size}")
    try:
        return pa.ipc.open_file(pa.memory_map(str(path), "r"))
    except (OSError, pa.ArrowInvalid) as e:
        raise error(f"{path}: not an Arrow IPC file ({e})") from e
