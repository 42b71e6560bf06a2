"""Reading a prepared dataset (the output of ``megagrow-prep``) as a :class:`TokenCorpus`.

A dataset directory holds ``manifest.json``, ``tokenizer.model`` and per split the Arrow IPC files
``<split>-NNNNN.arrow`` (one row per document: ``doc_id: string``, ``tokens: list<int32>`` and, in
datasets built with a sentence index, ``sentence_starts: list<int32>``: the token offsets where the
document's sentences start, ascending, the first 0).

Versions: 2 (current) adds the optional ``sentence_starts`` column and the manifest's
``sentence_index`` flag; version-1 datasets are still read (:meth:`ShardedCorpus.sentence_starts`
returns None for them).
:meth:`ShardedCorpus.open` checks the manifest against the files (presence, size, schema, counts)
and memory-maps them: opening a 20 GB dataset reads only the offsets, and :meth:`~ShardedCorpus.doc`
returns a zero-copy view into the mapped file. Content hashes are checked only by
:meth:`~ShardedCorpus.verify`, since hashing every shard at each start would be slow.

The format is defined here (the writer, ``data_prep.shards``, imports these constants); this module
does not depend on ``data_prep``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import sentencepiece as spm

from megagrow.data.corpus import SpecialTokens
from megagrow.data.manifest import MANIFEST_NAME, ManifestError, field, open_shard, read_json, sha256_file, split_files

__all__ = [
    "FORMAT",
    "MANIFEST_NAME",
    "READABLE_VERSIONS",
    "SCHEMA",
    "SCHEMA_WITH_SENTENCES",
    "VERSION",
    "ShardError",
    "ShardFile",
    "ShardedCorpus",
]

FORMAT = "megagrow-shards"
VERSION = 2
READABLE_VERSIONS = (1, 2)
#: One row per document; tokens without any EOS (separators are the loader's job).
SCHEMA = pa.schema([("doc_id", pa.string()), ("tokens", pa.list_(pa.int32()))])
#: The same plus each document's sentence start offsets (datasets built with a sentence index).
SCHEMA_WITH_SENTENCES = pa.schema(
    [("doc_id", pa.string()), ("tokens", pa.list_(pa.int32())), ("sentence_starts", pa.list_(pa.int32()))]
)


class ShardError(ManifestError):
    """A prepared dataset is missing, incomplete, or does not match its manifest."""


@dataclass(frozen=True)
class ShardFile:
    """A shard as listed in the manifest; ``path`` is relative to the dataset directory."""

    path: str
    bytes: int
    sha256: str
    n_docs: int
    n_tokens: int


_field = partial(field, error=ShardError)
_FILE_FIELDS = {"path": str, "bytes": int, "sha256": str, "n_docs": int, "n_tokens": int}


class ShardedCorpus:
    """One split of a prepared dataset, memory-mapped; implements :class:`~megagrow.data.corpus.TokenCorpus`.

    Attributes: ``data_dir``, ``split``, ``manifest`` (the parsed JSON), ``special``,
    ``vocab_size``, ``tokenizer_path``, ``tokenizer_sha256``, ``files`` (:class:`ShardFile` list).
    """

    special: SpecialTokens
    vocab_size: int

    def __init__(self, data_dir: Path, split: str, manifest: dict[str, Any]):
        """Use :meth:`open`, which validates ``manifest`` first."""
        self.data_dir = data_dir
        self.split = split
        self.manifest = manifest
        where = f"{data_dir / MANIFEST_NAME}"
        tok = _field(manifest, "tokenizer", dict, where)
        self.tokenizer_path = data_dir / _field(tok, "file", str, f"{where} tokenizer")
        self.tokenizer_sha256: str = _field(tok, "sha256", str, f"{where} tokenizer")
        self.vocab_size = _field(tok, "vocab_size", int, f"{where} tokenizer")
        try:
            self.special = SpecialTokens.from_dict(
                _field(manifest, "special_tokens", dict, where), where=f"{where} special_tokens"
            )
        except (TypeError, ValueError) as e:
            raise ShardError(str(e)) from e
        bad = [i for i in self.special.ids() if not 0 <= i < self.vocab_size]
        if bad or len(set(self.special.ids())) != len(self.special.ids()):
            raise ShardError(
                f"{where} special_tokens: ids {self.special.as_dict()} must be distinct and < vocab_size"
            )
        _, files = split_files(manifest, split, where, _FILE_FIELDS, ShardError)
        self.files: list[ShardFile] = [ShardFile(**f) for f in files]
        if not self.tokenizer_path.is_file():
            raise ShardError(f"{where}: tokenizer file {self.tokenizer_path} is missing")
        self._batches: list[pa.RecordBatch] = []
        self._values: list[np.ndarray] = []
        self._offsets: list[np.ndarray] = []
        self._sent_values: list[np.ndarray] = []
        self._sent_offsets: list[np.ndarray] = []
        self._has_sentences: bool | None = None
        self._word_starts: np.ndarray | None = None
        for shard in self.files:
            self._map(shard)
        batch_docs = [len(o) - 1 for o in self._offsets]
        self._batch_start = np.concatenate([[0], np.cumsum(batch_docs, dtype=np.int64)])
        self._lengths = (
            np.concatenate([np.diff(o).astype(np.int64) for o in self._offsets])
            if self._offsets
            else np.zeros(0, dtype=np.int64)
        )
        self._lengths.flags.writeable = False

    @classmethod
    def open(cls, data_dir: Path | str, split: str) -> ShardedCorpus:
        """Open split ``split`` (``"train"``, ``"validation"``) of the dataset in ``data_dir``."""
        data_dir = Path(data_dir)
        path = data_dir / MANIFEST_NAME
        missing = (f"no {MANIFEST_NAME} in {data_dir}: prepare it first with `megagrow-prep build --input TEXT "
                   f"--out {data_dir}` (TEXT: a .txt file, a directory of them, a dump...) or, for the sample "
                   f"corpus, `megagrow-prep sample --out {data_dir}`")
        manifest = read_json(path, missing, ShardError)
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        if fmt != FORMAT:
            raise ShardError(f"{path}: format is {fmt!r}, expected {FORMAT!r}")
        if manifest.get("version") not in READABLE_VERSIONS:
            raise ShardError(
                f"{path}: version is {manifest.get('version')!r}, this megagrow reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}; rebuild the dataset with this version's megagrow-prep"
            )
        return cls(data_dir, split, manifest)

    def _map(self, shard: ShardFile) -> None:
        path = self.data_dir / shard.path
        reader = open_shard(path, shard.bytes, ShardError)
        with_sentences = reader.schema.equals(SCHEMA_WITH_SENTENCES)
        if not (with_sentences or reader.schema.equals(SCHEMA)):
            raise ShardError(f"{path}: schema is {reader.schema}, expected {SCHEMA} or {SCHEMA_WITH_SENTENCES}")
        if self._has_sentences is not None and with_sentences != self._has_sentences:
            raise ShardError(f"{path}: has{'' if with_sentences else ' no'} sentence_starts column, unlike the "
                             "split's other shards")
        self._has_sentences = with_sentences
        n_docs = n_tokens = 0
        for b in range(reader.num_record_batches):
            try:
                batch = reader.get_batch(b)
            except (OSError, pa.ArrowInvalid) as e:
                raise ShardError(f"{path}: record batch {b} is unreadable ({e}); the shard is corrupt") from e
            tokens = batch.column(1)
            if tokens.null_count or tokens.values.null_count or tokens.offset:
                raise ShardError(f"{path}: record batch {b} has nulls or a sliced token column")
            offsets = tokens.offsets.to_numpy()
            values = tokens.values.to_numpy(zero_copy_only=True)
            if with_sentences:
                sents = batch.column(2)
                if sents.null_count or sents.values.null_count or sents.offset:
                    raise ShardError(f"{path}: record batch {b} has nulls or a sliced sentence_starts column")
                self._sent_offsets.append(sents.offsets.to_numpy())
                self._sent_values.append(sents.values.to_numpy(zero_copy_only=True))
            self._batches.append(batch)
            self._values.append(values)
            self._offsets.append(offsets)
            n_docs += len(batch)
            n_tokens += int(offsets[-1] - offsets[0])
        if (n_docs, n_tokens) != (shard.n_docs, shard.n_tokens):
            raise ShardError(
                f"{path}: holds {n_docs} documents / {n_tokens} tokens, "
                f"{MANIFEST_NAME} says {shard.n_docs} / {shard.n_tokens}"
            )

    # -- TokenCorpus ------------------------------------------------------------------------------

    @property
    def doc_lengths(self) -> np.ndarray:
        """int64 array (read-only): number of tokens of each document, shards in manifest order."""
        return self._lengths

    def _locate(self, i: int) -> tuple[int, int]:
        if not 0 <= i < len(self._lengths):
            raise IndexError(f"document {i} out of range for {self.n_docs} documents ({self.split})")
        b = int(np.searchsorted(self._batch_start, i, side="right")) - 1
        return b, i - int(self._batch_start[b])

    def doc(self, i: int) -> np.ndarray:
        """Token ids of document ``i``: an int32 read-only view into the memory-mapped shard."""
        b, j = self._locate(i)
        offsets = self._offsets[b]
        return self._values[b][offsets[j] : offsets[j + 1]]

    def doc_id(self, i: int) -> str:
        """The id of document ``i`` (e.g. ``enwiki:12`` or ``tragedies/hamlet.md``)."""
        b, j = self._locate(i)
        return self._batches[b].column(0)[j].as_py()

    def sentence_starts(self, i: int) -> np.ndarray | None:
        """Token offsets in document ``i`` where its sentences start (int32, ascending, first 0): a
        read-only view into the mapped shard; None when the dataset has no sentence index (version 1,
        or built with ``--no-sentence-index``)."""
        if not self._has_sentences:
            self._locate(i)
            return None
        b, j = self._locate(i)
        offsets = self._sent_offsets[b]
        return self._sent_values[b][offsets[j] : offsets[j + 1]]

    def word_starts(self) -> np.ndarray:
        """A read-only bool array over the vocabulary, True for tokens that begin a word (cached).

        True: pieces starting with ``▁`` (U+2581, SentencePiece's word boundary), and special,
        control, unknown and user-defined pieces (``[CLS]``, ``[MASK]``, the ``"\\n"`` piece: each
        stands alone). False: continuation pieces and byte-fallback pieces ``<0xNN>`` (the bytes of
        one character outside the vocabulary; a word that starts with one gets a ``▁`` piece first).
        """
        if self._word_starts is None:
            sp = self.load_tokenizer()
            n = sp.get_piece_size()
            starts = np.zeros(self.vocab_size, dtype=bool)
            for t in range(min(n, self.vocab_size)):
                if sp.is_byte(t):
                    continue
                starts[t] = (
                    sp.is_control(t) or sp.is_unknown(t) or sp.is_unused(t) or sp.id_to_piece(t).startswith("\u2581")
                )
                if not starts[t] and sp.id_to_piece(t) == "\n":  # user-defined newline piece
                    starts[t] = True
            starts.flags.writeable = False
            self._word_starts = starts
        return self._word_starts

    def fingerprint(self) -> str:
        """Hash of the split's shard hashes, the tokenizer's hash and the split name."""
        h = hashlib.sha256()
        for f in self.files:
            h.update(f.sha256.encode() + b"\n")
        h.update(self.tokenizer_sha256.encode() + b"\n")
        h.update(self.split.encode())
        return "shards-" + h.hexdigest()[:16]

    # -- extras ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._lengths)

    @property
    def n_docs(self) -> int:
        return len(self._lengths)

    @property
    def n_tokens(self) -> int:
        return int(self._lengths.sum())

    def verify(self) -> list[Path]:
        """Hash every shard of the split and the tokenizer; :class:`ShardError` on a mismatch.

        Returns the files verified."""
        checks = [(self.data_dir / f.path, f.sha256) for f in self.files]
        checks.append((self.tokenizer_path, self.tokenizer_sha256))
        for path, expected in checks:
            actual = sha256_file(path)
            if actual != expected:
                raise ShardError(f"{path}: SHA-256 is {actual}, {MANIFEST_NAME} says {expected}")
        return [path for path, _ in checks]

    def load_tokenizer(self) -> spm.SentencePieceProcessor:
        """The dataset's SentencePiece model (to decode samples, or encode prompts)."""
        return spm.SentencePieceProcessor(model_file=str(self.tokenizer_path))
