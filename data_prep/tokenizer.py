"""SentencePiece tokenizers with megagrow's fixed special-token ids.

A trained model has ``[PAD]``=0, ``[UNK]``=1, ``[CLS]``=2, ``[SEP]``=3, ``[MASK]``=4, ``[EOS]``=5 (no
BOS), then a ``"\\n"`` piece (id 6) so that paragraph breaks survive tokenization (the default
``nmt_nfkc`` normalizer would turn them into spaces), then the 256 byte-fallback pieces and the
learned vocabulary.

Training is reproducible: the same sentences and settings give a byte-identical model file.
SentencePiece 0.2's own sampling (``input_sentence_size`` with ``shuffle_input_sentence``) is not:
its reservoir sampler ignores ``set_random_generator_seed`` (two runs gave different
vocabularies). So :func:`sample_lines` draws the training sample itself, with a seeded generator,
and the trainer is given exactly that sample. The model is written through ``model_writer`` (no
input path or output prefix recorded in it), and ``num_threads`` is cleared from the stored trainer
spec, so the file does not depend on the machine's core count either.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from data_prep.atomic import write_bytes_atomic
from data_prep.errors import PrepError
from megagrow.data.tokenizer import (
    NEWLINE_PIECE,
    SPECIAL_IDS,
    SPECIAL_PIECES,
    TokenizerError,
    TokenizerInfo,
    read_tokenizer,
)

__all__ = [
    "MIN_VOCAB_SIZE",
    "MODEL_TYPES",
    "NEWLINE_PIECE",
    "SPECIAL_IDS",
    "SPECIAL_PIECES",
    "TokenizerInfo",
    "load_tokenizer",
    "sample_lines",
    "train_tokenizer",
]

MODEL_TYPES = ("bpe", "unigram")
#: The smallest vocabulary a trained tokenizer may have: 7 special pieces, 256 byte pieces and the text's own.
MIN_VOCAB_SIZE = 300
# Longest training sentence in bytes (SentencePiece skips longer ones; its default is 4192).
_MAX_SENTENCE_BYTES = 1 << 16


def sample_lines(lines: Iterable[str], n_lines: int, max_lines: int, seed: int) -> Iterator[str]:
    """Yield at most ``max_lines`` of the ``n_lines`` lines, chosen uniformly at random with ``seed``.

    All lines are yielded (in order) when ``max_lines`` is 0 or not smaller than ``n_lines``; the
    choice depends only on ``n_lines``, ``max_lines`` and ``seed``.
    """
    if max_lines <= 0 or max_lines >= n_lines:
        yield from lines
        return
    chosen = np.sort(np.random.default_rng(seed).choice(n_lines, size=max_lines, replace=False))
    k = 0
    for i, line in enumerate(lines):
        if i == chosen[k]:
            yield line
            k += 1
            if k == len(chosen):
                return


def _training_failure(error: str, vocab_size: int, model_type: str) -> str:
    """The message for a failed training; when the text is too small for ``vocab_size``, a working fix."""
    where = f"tokenizer training failed (--vocab-size {vocab_size}, --model-type {model_type})"
    m = re.search(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", error)
    if m is None:
        return f"{where}: {error}"
    most = int(m.group(1))
    if most >= MIN_VOCAB_SIZE:
        return f"{where}: the text has too few distinct pieces for {vocab_size}; use --vocab-size {most} or less"
    return (
        f"{where}: the text is too small for a tokenizer of even {MIN_VOCAB_SIZE} pieces (at most {most}); "
        "add text, or reuse a trained tokenizer with --tokenizer MODEL"
    )


def train_tokenizer(
    sentences: Iterable[str], out_path: Path, vocab_size: int, model_type: str, num_threads: int
) -> TokenizerInfo:
    """Train a SentencePiece model on ``sentences`` (one paragraph each) and write it to ``out_path``."""
    if model_type not in MODEL_TYPES:
        raise PrepError(f"--model-type {model_type!r}: expected one of {', '.join(MODEL_TYPES)}")
    writer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=writer,
            model_type=model_type,
            vocab_size=vocab_size,
            pad_id=SPECIAL_IDS.pad,
            unk_id=SPECIAL_IDS.unk,
            bos_id=-1,
            eos_id=SPECIAL_IDS.eos,
            pad_piece=SPECIAL_PIECES["pad"],
            unk_piece=SPECIAL_PIECES["unk"],
            eos_piece=SPECIAL_PIECES["eos"],
            control_symbols=[SPECIAL_PIECES[k] for k in ("cls", "sep", "mask")],
            user_defined_symbols=[NEWLINE_PIECE],
            byte_fallback=True,
            character_coverage=0.9999,
            input_sentence_size=0,  # the sample was drawn by sample_lines
            shuffle_input_sentence=False,
            max_sentence_length=_MAX_SENTENCE_BYTES,
            num_threads=max(1, num_threads),
            minloglevel=2,
        )
    except RuntimeError as e:
        raise PrepError(_training_failure(str(e), vocab_size, model_type)) from e
    write_bytes_atomic(out_path, _without_run_details(writer.getvalue()))
    info = load_tokenizer(out_path)
    if info.special != SPECIAL_IDS or info.newline_id != SPECIAL_IDS.eos + 1:
        raise AssertionError(f"trained tokenizer has special ids {info.special}, newline {info.newline_id}")
    return info


def _without_run_details(model: bytes) -> bytes:
    """The model with ``trainer_spec.num_threads`` cleared (it varies by machine, not by result)."""
    proto = model_pb2.ModelProto.FromString(model)
    proto.trainer_spec.ClearField("num_threads")
    return proto.SerializeToString(deterministic=True)


def load_tokenizer(path: Path) -> TokenizerInfo:
    """Open an existing model and read its special-token ids (each must exist as a control piece)."""
    try:
        return read_tokenizer(path)
    except TokenizerError as e:
        raise PrepError(str(e)) from e
