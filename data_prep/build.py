"""The build pipeline: inputs -> cleaned documents -> tokenizer -> Arrow shards -> manifest.

1. Every input is read by its :mod:`~data_prep.readers` reader; documents are normalized,
   filtered and de-duplicated (:mod:`~data_prep.clean`), up/down-sampled by their source's weight
   (:func:`copies_of`) and spooled to ``<out>/.staging/`` (so memory stays bounded), together with
   the training split's paragraphs for the tokenizer.
2. A SentencePiece model is trained on a seeded sample of those paragraphs, or an existing one
   is loaded (:mod:`~data_prep.tokenizer`).
3. The spooled documents are tokenized by a process pool and written to shards
   (:mod:`~data_prep.shards`).
4. The tokenizer is put in place and ``manifest.json`` written last, atomically.

The old manifest of ``<out>`` is removed before anything else is written there, so a build that
fails midway (an exception, a kill) leaves a directory that readers refuse (no manifest) rather
than a mixed dataset. Re-running the same build *restarts cleanly*: the previous build's shards,
tokenizer, temporary files and staging area are removed first, and since every step is
deterministic the result equals an uninterrupted build (only ``created_at`` differs).

Weights: a document of a source with weight ``w`` appears ``floor(w)`` times, plus once more when
a hash of ``(doc_id, floor(w))`` read as a fraction is below ``frac(w)``; copies after the first
get ids ``<id>#1``, ``<id>#2`` ... and always go to their original's split (no train/validation
leakage). The manifest records each source's weight, documents read and documents written.

Train/validation: by a hash of the document id, or, when there are too few documents for that (a
single text file, a handful), by blocks of paragraphs (:mod:`~data_prep.split`); the manifest's
``settings.split`` says which. Copies of a block go to its split too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_prep.atomic import TMP_SUFFIX, write_bytes_atomic
from data_prep.clean import DocumentFilter
from data_prep.errors import PrepError
from data_prep.readers import Source, SourceSpec, open_source, parse_source
from data_prep.sentences import SPLITTER_NAME
from data_prep.shards import (
    MANIFEST_NAME,
    SPLITS,
    TOKENIZER_NAME,
    ShardFile,
    ShardWriter,
    encode_documents,
    make_manifest,
    split_of,
    write_manifest,
)
from data_prep.split import BLOCK_CHARS, SplitInfo, block_hash, needs_blocks, paragraph_blocks, validation_blocks
from data_prep.tokenizer import (
    MIN_VOCAB_SIZE,
    MODEL_TYPES,
    TokenizerInfo,
    load_tokenizer,
    sample_lines,
    train_tokenizer,
)

__all__ = ["BuildSettings", "BuildSummary", "build_dataset", "build_tokenizer", "copies_of"]

log = logging.getLogger(__name__)

_STAGING = ".staging"


@dataclass(frozen=True)
class BuildSettings:
    """Everything that shapes a build (all but ``workers`` is recorded in the manifest)."""

    vocab_size: int = 8000
    """Size of the trained tokenizer's vocabulary (ignored with ``tokenizer``)."""
    model_type: str = "bpe"
    """SentencePiece model type: ``bpe`` or ``unigram``."""
    val_fraction: float = 0.01
    """Fraction of documents (by id hash) in the validation split; 0 for no validation split."""
    min_chars: int = 200
    """Documents shorter than this many characters after cleaning are dropped."""
    sentence_sample: int = 2_000_000
    """At most this many paragraphs (of the train split) train the tokenizer; 0 = all."""
    shard_tokens: int = 64_000_000
    """A shard is closed once it holds this many tokens."""
    seed: int = 0
    """Seed of the tokenizer's training sample."""
    tokenizer: Path | None = None
    """Reuse this SentencePiece model instead of training one."""
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Tokenization processes (also the tokenizer trainer's threads)."""
    sentence_index: bool = True
    """Store each document's sentence start offsets (BERT sentence pairs); costs the splitter's time (small)."""
    block_chars: int = BLOCK_CHARS
    """Minimum size (characters) of a block when a corpus with too few documents is split by paragraph blocks."""

    def validate(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise PrepError(f"--model-type {self.model_type!r}: expected one of {', '.join(MODEL_TYPES)}")
        if self.tokenizer is None and self.vocab_size < MIN_VOCAB_SIZE:
            raise PrepError(
                f"--vocab-size {self.vocab_size}: expected at least {MIN_VOCAB_SIZE} "
                "(7 special pieces + 256 byte pieces + the text's own)"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise PrepError(f"--val-fraction {self.val_fraction}: expected a number in [0, 1)")
        for name, value in (("--min-chars", self.min_chars), ("--sentence-sample", self.sentence_sample)):
            if value < 0:
                raise PrepError(f"{name} {value}: expected a number >= 0")
        if self.block_chars <= 0:
            raise PrepError(f"block_chars {self.block_chars}: expected a positive number")
        if self.shard_tokens <= 0:
            raise PrepError(f"--shard-tokens {self.shard_tokens}: expected a positive number")
        if self.workers < 1:
            raise PrepError(f"--workers {self.workers}: expected a positive number")
        if self.tokenizer is not None and not Path(self.tokenizer).is_file():
            raise PrepError(f"--tokenizer {self.tokenizer}: no such file; expected a SentencePiece .model file")

    def recorded(self, tokenizer: TokenizerInfo, split: SplitInfo) -> dict[str, Any]:
        """The settings as stored in the manifest."""
        return {
            "val_fraction": self.val_fraction,
            "split": split.recorded(),
            "min_chars": self.min_chars,
            "vocab_size": tokenizer.vocab_size,
            "model_type": tokenizer.model_type,
            "tokenizer_source": "trained" if self.tokenizer is None else str(Path(self.tokenizer).resolve()),
            "sentence_sample": self.sentence_sample,
            "seed": self.seed,
            "shard_tokens": self.shard_tokens,
            "sentence_splitter": SPLITTER_NAME if self.sentence_index else None,
        }


@dataclass
class BuildSummary:
    """What a build produced: the output directory, its manifest and stage timings (seconds)."""

    out_dir: Path
    manifest: dict[str, Any]
    timings: dict[str, float]


def copies_of(doc_id: str, weight: float) -> int:
    """How many times a document of a source with ``weight`` appears (see the module docstring)."""
    whole = int(weight)
    frac = weight - whole
    if frac <= 0:
        return whole
    h = int.from_bytes(hashlib.sha256(f"{doc_id}\0{whole}".encode()).digest()[:8], "big")
    return whole + (h / 2.0**64 < frac)


@dataclass
class _SourceStats:
    source: Source
    weight: float = 1.0
    n_read: int = 0
    n_docs: int = 0
    n_tokens: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def record(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": str(self.source.path.resolve()), "kind": self.source.kind}
        if self.source.sha256 is not None:
            entry["sha256"] = self.source.sha256
        dropped = self.dropped + self.source.skipped
        entry.update(
            weight=self.weight,
            n_docs_kept=self.n_read,
            n_docs=self.n_docs,
            n_tokens=self.n_tokens,
            dropped=dict(sorted(dropped.items())),
            replaced=dict(sorted(self.source.replaced.items())),
        )
        return entry


def _spec(p: Path | str | SourceSpec) -> SourceSpec:
    """A spec as given, a ``TYPE:PATH[:WEIGHT]`` string parsed, or a path to auto-detect."""
    if isinstance(p, SourceSpec):
        return p
    return parse_source(p) if isinstance(p, str) else SourceSpec(Path(p))


def build_dataset(
    inputs: Sequence[Path | str | SourceSpec], out_dir: Path, settings: BuildSettings, progress: bool = True
) -> BuildSummary:
    """Build a prepared dataset in ``out_dir`` from ``inputs`` (paths, auto-detected, or
    :class:`~data_prep.readers.SourceSpec`); see the module docstring."""
    t0 = time.perf_counter()
    settings.validate()
    if not inputs:
        raise PrepError("no --input given; expected at least one dump, book file or directory")
    specs = [_spec(p) for p in inputs]
    stats = [_SourceStats(open_source(spec), weight=spec.weight) for spec in specs]
    existing = load_tokenizer(Path(settings.tokenizer)) if settings.tokenizer is not None else None
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)
    staging = out_dir / _STAGING
    staging.mkdir()
    timings: dict[str, float] = {}
    try:
        t = time.perf_counter()
        n_docs, n_sentences, doc_filter, split = _spool(stats, staging, settings, progress)
        timings["read_clean"] = time.perf_counter() - t

        t = time.perf_counter()
        if existing is not None:
            tokenizer = existing
        else:
            log.info(
                "training a %d-piece %s tokenizer on %d paragraphs",
                settings.vocab_size,
                settings.model_type,
                min(n_sentences, settings.sentence_sample or n_sentences),
            )
            with open(staging / "sentences.txt", encoding="utf-8") as f:
                lines = (line.rstrip("\n") for line in f)
                sample = sample_lines(lines, n_sentences, settings.sentence_sample, settings.seed)
                tokenizer = train_tokenizer(
                    sample,
                    staging / TOKENIZER_NAME,
                    settings.vocab_size,
                    settings.model_type,
                    settings.workers,
                )
        timings["tokenizer"] = time.perf_counter() - t

        t = time.perf_counter()
        splits = _write_shards(stats, staging, out_dir, tokenizer, settings, n_docs, progress)
        timings["tokenize_write"] = time.perf_counter() - t

        tokenizer = _install_tokenizer(tokenizer, out_dir / TOKENIZER_NAME)
        dropped: Counter[str] = Counter()
        replaced: Counter[str] = Counter()
        for s in stats:
            dropped.update(s.source.skipped)
            replaced.update(s.source.replaced)
        dropped.update(doc_filter.dropped)
        manifest = make_manifest(
            tokenizer,
            splits,
            [s.record() for s in stats],
            settings.recorded(tokenizer, split),
            dict(+dropped),
            dict(+replaced),
            sentence_index=settings.sentence_index,
        )
        write_manifest(out_dir, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    timings["total"] = time.perf_counter() - t0
    return BuildSummary(out_dir=out_dir, manifest=manifest, timings=timings)


def _prepare_out_dir(out_dir: Path) -> None:
    """Create ``out_dir``, or clear a previous build from it (manifest first); refuse other contents."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PrepError(f"--out {out_dir}: exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    ours = [MANIFEST_NAME, TOKENIZER_NAME, _STAGING]
    foreign = sorted(
        p.name
        for p in out_dir.iterdir()
        if p.name not in ours
        and not p.name.endswith(TMP_SUFFIX)
        and not any(p.name.startswith(f"{split}-") and p.name.endswith(".arrow") for split in SPLITS)
    )
    if foreign:
        raise PrepError(
            f"--out {out_dir}: not empty and not a megagrow-prep output (found {', '.join(foreign[:5])}); "
            "expected a new or empty directory, or one from a previous build"
        )
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
    for p in out_dir.iterdir():
        if p.name == _STAGING:
            shutil.rmtree(p)
        elif p.name not in ours:
            p.unlink()


def _spool(
    stats: list[_SourceStats], staging: Path, settings: BuildSettings, progress: bool
) -> tuple[int, int, DocumentFilter, SplitInfo]:
    """Read, clean and spool every document; write the train split's paragraphs for the tokenizer.

    Returns the number of rows to write (documents, or blocks when split by blocks, copies included),
    the number of paragraphs written, the filter (with its drop counts) and how the splits were made.
    """
    doc_filter = DocumentFilter(min_chars=settings.min_chars)
    seen_ids: dict[int, int] = {}  # 64-bit hash of a document id -> index of the input it came from
    counts: Counter[str] = Counter()
    unique: Counter[str] = Counter()  # documents written (at least one copy), by split
    n_sentences = 0
    with (
        open(staging / "docs.jsonl", "w", encoding="utf-8") as docs_out,
        open(staging / "sentences.txt", "w", encoding="utf-8") as sentences_out,
    ):
        for index, st in enumerate(stats):
            before = doc_filter.dropped.copy()
            docs = tqdm(st.source.documents(), desc=f"read {st.source.kind}", unit="doc", disable=not progress)
            for doc in docs:
                key = int.from_bytes(hashlib.blake2b(doc.doc_id.encode("utf-8"), digest_size=8).digest(), "big")
                if key in seen_ids:
                    raise PrepError(
                        f"--input {st.source.path}: document id {doc.doc_id!r} was already read from "
                        f"--input {stats[seen_ids[key]].source.path}; inputs must not overlap"
                    )
                seen_ids[key] = index
                text = doc_filter(doc.text)
                if text is None:
                    continue
                split = split_of(doc.doc_id, settings.val_fraction)
                st.n_read += 1
                n_copies = copies_of(doc.doc_id, st.weight)
                for k in range(n_copies):
                    counts[split] += 1
                    st.n_docs += 1
                    docs_out.write(json.dumps([index, doc.doc_id, k, split, text], ensure_ascii=False) + "\n")
                unique[split] += n_copies > 0
                if split == "train" and n_copies:
                    for line in text.split("\n"):
                        if line:
                            sentences_out.write(line + "\n")
                            n_sentences += 1
            st.dropped = doc_filter.dropped - before
            log.info(
                "%s: %d documents kept, dropped %s",
                st.source.path,
                st.n_docs,
                dict(st.dropped + st.source.skipped),
            )
    n = sum(counts.values())
    if n == 0:
        dropped = sum((st.source.skipped for st in stats), doc_filter.dropped.copy())
        fixes = ["add inputs"]
        if dropped["too_short"]:
            fixes.append(f"lower --min-chars (now {settings.min_chars})")
        if any(st.weight == 0 for st in stats):
            fixes.append("give a --source a weight above 0")
        raise PrepError(f"no documents to write (dropped: {dict(dropped) or 'none'}); {', or '.join(fixes)}")
    reason = needs_blocks(sum(unique.values()), unique["validation"], settings.val_fraction)
    if reason is None:
        return n, n_sentences, doc_filter, SplitInfo("document")
    log.info("too few documents for a split by document (%s): splitting by paragraph blocks", reason)
    n, n_sentences, info = _split_blocks(stats, staging, settings, reason)
    return n, n_sentences, doc_filter, info


def _split_blocks(
    stats: list[_SourceStats], staging: Path, settings: BuildSettings, reason: str
) -> tuple[int, int, SplitInfo]:
    """Rewrite the spooled documents as paragraph blocks, split by :func:`~data_prep.split.validation_blocks`;
    the train blocks' paragraphs replace the tokenizer's text. Returns rows, paragraphs and the split."""
    hashes = [
        block_hash(block.block_id(doc_id))
        for _, doc_id, copy, _, text in _spooled(staging)
        if copy == 0
        for block in paragraph_blocks(text, settings.block_chars)
    ]
    validation = validation_blocks(hashes, settings.val_fraction, settings.block_chars)
    for st in stats:
        st.n_docs = 0
    n = n_sentences = 0
    with (
        open(staging / "blocks.jsonl", "w", encoding="utf-8") as out,
        open(staging / "sentences.txt", "w", encoding="utf-8") as sentences_out,
    ):
        for index, doc_id, copy, _, text in _spooled(staging):
            for block in paragraph_blocks(text, settings.block_chars):
                block_id = block.block_id(doc_id)
                split = "validation" if block_hash(block_id) in validation else "train"
                out.write(json.dumps([index, block_id, copy, split, block.text], ensure_ascii=False) + "\n")
                stats[index].n_docs += 1
                n += 1
                if split == "train" and copy == 0:
                    for line in block.text.split("\n"):
                        if line:
                            sentences_out.write(line + "\n")
                            n_sentences += 1
    os.replace(staging / "blocks.jsonl", staging / "docs.jsonl")
    info = SplitInfo("paragraph_blocks", reason, settings.block_chars, len(hashes), len(validation))
    log.info("%d blocks of paragraphs, %d in validation", info.n_blocks, info.n_validation_blocks)
    return n, n_sentences, info


def _spooled(staging: Path) -> Iterator[tuple[int, str, int, str, str]]:
    """The spooled rows: input index, document (or block) id, copy number, split, text."""
    with open(staging / "docs.jsonl", encoding="utf-8") as f:
        for line in f:
            index, doc_id, copy, split, text = json.loads(line)
            yield index, doc_id, copy, split, text


def _write_shards(
    stats: list[_SourceStats],
    staging: Path,
    out_dir: Path,
    tokenizer: TokenizerInfo,
    settings: BuildSettings,
    n_docs: int,
    progress: bool,
) -> dict[str, list[ShardFile]]:
    split_names = SPLITS if settings.val_fraction > 0 else ("train",)
    source_of: dict[str, tuple[int, str]] = {}

    def docs() -> Iterator[tuple[str, str]]:
        for index, doc_id, copy, split, text in _spooled(staging):
            row_id = doc_id if copy == 0 else f"{doc_id}#{copy}"
            source_of[row_id] = (index, split)
            yield row_id, text

    with ExitStack() as stack:
        writers = {
            name: stack.enter_context(
                ShardWriter(out_dir, name, settings.shard_tokens, sentences=settings.sentence_index)
            )
            for name in split_names
        }
        encoded = encode_documents(docs(), tokenizer, settings.workers, sentences=settings.sentence_index)
        bar = tqdm(encoded, total=n_docs, desc="tokenize", unit="doc", disable=not progress)
        for doc_id, tokens, starts in bar:
            index, split = source_of.pop(doc_id)
            writers[split].add(doc_id, tokens, starts)
            stats[index].n_tokens += len(tokens)
        return {name: w.close() for name, w in writers.items()}


def _install_tokenizer(tokenizer: TokenizerInfo, dest: Path) -> TokenizerInfo:
    """Put the model at ``dest`` (moved out of staging, or copied from where the user keeps it)."""
    if dest.exists() and dest.samefile(tokenizer.path):
        return tokenizer
    if tokenizer.path.parent.name == _STAGING:
        os.replace(tokenizer.path, dest)
    else:
        write_bytes_atomic(dest, tokenizer.path.read_bytes())
    return replace(tokenizer, path=dest)


def build_tokenizer(
    inputs: Sequence[Path | str | SourceSpec], model_path: Path, settings: BuildSettings, progress: bool = True
) -> TokenizerInfo:
    """Train only the tokenizer (``megagrow-prep tokenizer``): read and clean ``inputs`` as a build
    would, sample the train split's paragraphs, and write the model atomically to ``model_path``."""
    settings.validate()
    if not inputs:
        raise PrepError("no --source given; expected at least one input")
    specs = [_spec(p) for p in inputs]
    stats = [_SourceStats(open_source(spec), weight=spec.weight) for spec in specs]
    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    staging = model_path.parent / f".{model_path.name}{_STAGING}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        _, n_sentences, _, _ = _spool(stats, staging, settings, progress)
        with open(staging / "sentences.txt", encoding="utf-8") as f:
            lines = (line.rstrip("\n") for line in f)
            sample = sample_lines(lines, n_sentences, settings.sentence_sample, settings.seed)
            return train_tokenizer(sample, model_path, settings.vocab_size, settings.model_type, settings.workers)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
