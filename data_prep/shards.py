"""Writing the prepared dataset: tokenization, the train/validation split, Arrow shards, the manifest.

Layout of an output directory (read back by :class:`megagrow.data.shards.ShardedCorpus`)::

    manifest.json            written last, atomically: its presence means the dataset is complete
    tokenizer.model          the SentencePiece model the tokens come from
    train-00000.arrow ...    Arrow IPC *file* format, one row per document:
    validation-00000.arrow     doc_id: string, tokens: list<int32> (no EOS; separators are the loader's),
                             [sentence_starts: list<int32>] (with a sentence index: token offsets
                             where sentences start, first 0; a paragraph's ``"\n"`` token ends the
                             sentence before it)

A document goes to ``validation`` when the SHA-256 of its id, read as a fraction of 2^64, falls
below ``val_fraction``, so its split never changes when other documents are added or removed.
Shards roll over once they hold ``max_tokens`` tokens.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import sentencepiece as spm

from data_prep.atomic import TMP_SUFFIX, sha256_file, write_json_atomic
from data_prep.sentences import split_sentences
from data_prep.tokenizer import TokenizerInfo
from megagrow.data.shards import FORMAT, MANIFEST_NAME, SCHEMA, SCHEMA_WITH_SENTENCES, VERSION, ShardFile
from megagrow.data.tokenizer import encode_paragraphs

__all__ = [
    "FORMAT",
    "MANIFEST_NAME",
    "SCHEMA",
    "SCHEMA_WITH_SENTENCES",
    "SPLITS",
    "TOKENIZER_NAME",
    "VERSION",
    "ShardFile",
    "ShardWriter",
    "encode_documents",
    "make_manifest",
    "split_of",
    "write_manifest",
]

TOKENIZER_NAME = "tokenizer.model"
SPLITS = ("train", "validation")


def split_of(doc_id: str, val_fraction: float) -> str:
    """``"validation"`` or ``"train"``, from a stable hash of the document id."""
    h = int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big")
    return "validation" if h / 2.0**64 < val_fraction else "train"


# ----------------------------------------------------------------------------------------------
# Tokenization


Encoded = tuple[str, np.ndarray, np.ndarray | None]
"""A tokenized document: id, token ids, sentence start offsets (None without a sentence index)."""


def encode_text(
    sp: spm.SentencePieceProcessor, text: str, newline_id: int | None, sentences: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Token ids of a document: its paragraphs (lines) encoded one by one, joined by ``newline_id``;
    with ``sentences`` also the offsets where its sentences start.

    Encoding paragraph by paragraph gives the first word of each paragraph the same pieces as in
    training (where every paragraph was a sentence of its own). Sentences are encoded one by one;
    SentencePiece splits at whitespace, so this gives the paragraph's own tokens.
    """
    if not sentences:
        return encode_paragraphs(sp, text, newline_id), None
    paragraphs = [p for p in text.split("\n") if p.strip()]
    ids: list[int] = []
    groups = [split_sentences(p) for p in paragraphs]
    encoded = iter(sp.encode([s for g in groups for s in g]))  # one call per document: 3x faster than per paragraph
    starts: list[int] = []
    for k, group in enumerate(groups):
        if k and newline_id is not None:
            ids.append(newline_id)
        for _ in group:
            piece_ids = next(encoded)
            if piece_ids:
                starts.append(len(ids))
                ids.extend(piece_ids)
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    return np.array(ids, dtype=np.int32), np.array(starts, dtype=np.int32)


_worker_sp: spm.SentencePieceProcessor | None = None
_worker_newline: int | None = None
_worker_sentences = False


def _init_worker(model_path: str, newline_id: int | None, sentences: bool) -> None:
    global _worker_sp, _worker_newline, _worker_sentences
    _worker_sp = spm.SentencePieceProcessor(model_file=model_path)
    _worker_newline = newline_id
    _worker_sentences = sentences


def _encode_chunk(chunk: list[tuple[str, str]]) -> list[Encoded]:
    assert _worker_sp is not None, "worker not initialized"
    return [(doc_id, *encode_text(_worker_sp, text, _worker_newline, _worker_sentences)) for doc_id, text in chunk]


def _chunks(docs: Iterable[tuple[str, str]], max_chars: int, max_docs: int) -> Iterator[list[tuple[str, str]]]:
    chunk: list[tuple[str, str]] = []
    chars = 0
    for doc in docs:
        chunk.append(doc)
        chars += len(doc[1])
        if chars >= max_chars or len(chunk) >= max_docs:
            yield chunk
            chunk, chars = [], 0
    if chunk:
        yield chunk


def encode_documents(
    docs: Iterable[tuple[str, str]],
    tokenizer: TokenizerInfo,
    workers: int,
    chunk_chars: int = 1 << 20,
    sentences: bool = False,
) -> Iterator[Encoded]:
    """Tokenize ``(doc_id, text)`` pairs, in order, with ``workers`` processes (see :func:`encode_text`).

    Each worker loads the model from its path. At most ``4 * workers`` chunks of about
    ``chunk_chars`` characters are in flight, so memory stays bounded on any corpus size.
    """
    chunks = _chunks(docs, chunk_chars, max_docs=1024)
    if workers <= 1:
        sp = tokenizer.processor()
        for chunk in chunks:
            for doc_id, text in chunk:
                yield (doc_id, *encode_text(sp, text, tokenizer.newline_id, sentences))
        return
    # fork where available: workers start at once with the modules already loaded (spawn would import
    # the CLI, and torch through megagrow.data, again in every worker: +3.6 s on the sample).
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    with ctx.Pool(workers, _init_worker, (str(tokenizer.path), tokenizer.newline_id, sentences)) as pool:
        pending: deque[AsyncResult[list[Encoded]]] = deque()
        for chunk in chunks:
            pending.append(pool.apply_async(_encode_chunk, (chunk,)))
            if len(pending) >= 4 * workers:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


# ----------------------------------------------------------------------------------------------
# Shards


def _list_array(rows: list[np.ndarray]) -> pa.ListArray:
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum([len(t) for t in rows], out=offsets[1:])
    values = pa.array(np.concatenate(rows) if rows else np.zeros(0, np.int32), type=pa.int32())
    return pa.ListArray.from_arrays(pa.array(offsets), values)


class ShardWriter:
    """Appends documents of one split to ``<split>-NNNNN.arrow`` files in ``out_dir``.

    Rows are buffered into record batches of about ``batch_tokens`` tokens; a shard is closed once
    it holds ``max_tokens`` tokens. Each shard is written as ``<name>.tmp`` and renamed when
    complete. Use as a context manager: on an exception the unfinished shard is deleted.
    """

    def __init__(
        self, out_dir: Path, split: str, max_tokens: int, batch_tokens: int = 1 << 22, sentences: bool = False
    ):
        if max_tokens <= 0:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        self.out_dir = Path(out_dir)
        self.split = split
        self.max_tokens = max_tokens
        self.batch_tokens = min(batch_tokens, max_tokens)
        self.sentences = sentences
        self.schema = SCHEMA_WITH_SENTENCES if sentences else SCHEMA
        self.files: list[ShardFile] = []
        self._starts: list[np.ndarray] = []
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._ids: list[str] = []
        self._tokens: list[np.ndarray] = []
        self._buffered = 0
        self._shard_docs = 0
        self._shard_tokens = 0

    @property
    def n_docs(self) -> int:
        return sum(f.n_docs for f in self.files) + self._shard_docs

    @property
    def n_tokens(self) -> int:
        return sum(f.n_tokens for f in self.files) + self._shard_tokens

    def _final_path(self) -> Path:
        return self.out_dir / f"{self.split}-{len(self.files):05d}.arrow"

    def _tmp_path(self) -> Path:
        final = self._final_path()
        return final.with_name(final.name + TMP_SUFFIX)

    def add(self, doc_id: str, tokens: np.ndarray, sentence_starts: np.ndarray | None = None) -> None:
        if self.sentences:
            if sentence_starts is None:
                raise ValueError(f"document {doc_id!r}: no sentence_starts for a writer with a sentence index")
            self._starts.append(np.asarray(sentence_starts, dtype=np.int32))
        if self._writer is None:
            self._writer = pa.ipc.new_file(str(self._tmp_path()), self.schema)
        self._ids.append(doc_id)
        self._tokens.append(tokens)
        self._buffered += len(tokens)
        self._shard_docs += 1
        self._shard_tokens += len(tokens)
        if self._shard_tokens >= self.max_tokens:
            self._finish_shard()
        elif self._buffered >= self.batch_tokens:
            self._flush()

    def _flush(self) -> None:
        if not self._ids or self._writer is None:
            return
        columns = [pa.array(self._ids, pa.string()), _list_array(self._tokens)]
        if self.sentences:
            columns.append(_list_array(self._starts))
        self._writer.write_batch(pa.record_batch(columns, schema=self.schema))
        self._ids, self._tokens, self._starts, self._buffered = [], [], [], 0

    def _finish_shard(self) -> None:
        self._flush()
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        tmp, final = self._tmp_path(), self._final_path()
        shard = ShardFile(
            path=final.name,
            bytes=tmp.stat().st_size,
            sha256=sha256_file(tmp),
            n_docs=self._shard_docs,
            n_tokens=self._shard_tokens,
        )
        tmp.replace(final)
        self.files.append(shard)
        self._shard_docs = self._shard_tokens = 0

    def close(self) -> list[ShardFile]:
        """Finish the open shard; the list of all shards written."""
        self._finish_shard()
        return self.files

    def abort(self) -> None:
        """Drop the unfinished shard (finished ones stay; without a manifest they are ignored)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._tmp_path().unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()


# ----------------------------------------------------------------------------------------------
# Manifest


def make_manifest(
    tokenizer: TokenizerInfo,
    splits: dict[str, list[ShardFile]],
    sources: list[dict[str, Any]],
    settings: dict[str, Any],
    dropped: dict[str, int],
    replaced: dict[str, int] | None = None,
    sentence_index: bool = False,
) -> dict[str, Any]:
    """The manifest document (see :mod:`megagrow.data.shards` for the reader's checks)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "tokenizer": {
            "file": TOKENIZER_NAME,
            "sha256": tokenizer.sha256,
            "type": tokenizer.model_type,
            "vocab_size": tokenizer.vocab_size,
            "newline_id": tokenizer.newline_id,
        },
        "special_tokens": tokenizer.special.as_dict(),
        "splits": {
            name: {
                "files": [asdict(f) for f in files],
                "n_docs": sum(f.n_docs for f in files),
                "n_tokens": sum(f.n_tokens for f in files),
            }
            for name, files in splits.items()
        },
        "sources": sources,
        "settings": settings,
        "dropped": dict(sorted(dropped.items())),
        "replaced": dict(sorted((replaced or {}).items())),
        "sentence_index": sentence_index,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically; call it last, once every file it lists is in place."""
    path = Path(out_dir) / MANIFEST_NAME
    write_json_atomic(path, manifest)
    return path
