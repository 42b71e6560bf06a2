"""The reading side of megagrow-prep's SentencePiece tokenizers: their fixed special pieces, opening a model file
and checking it has them, and encoding text the way the prepared data was encoded. ``data_prep`` (the writer, which
also trains tokenizers) imports these; megagrow never imports ``data_prep``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from megagrow.data.corpus import SpecialTokens
from megagrow.data.manifest import sha256_file

#: Surface of each special token, by the field names of :class:`SpecialTokens`.
SPECIAL_PIECES = {
    "pad": "[PAD]",
    "unk": "[UNK]",
    "cls": "[CLS]",
    "sep": "[SEP]",
    "mask": "[MASK]",
    "eos": "[EOS]",
}
#: The ids every tokenizer trained by megagrow-prep has.
SPECIAL_IDS = SpecialTokens(pad=0, unk=1, cls=2, sep=3, mask=4, eos=5)
NEWLINE_PIECE = "\n"


class TokenizerError(ValueError):
    """A file that is not a SentencePiece model with megagrow-prep's special pieces."""


@dataclass(frozen=True)
class TokenizerInfo:
    """A tokenizer model file and what the manifest records about it."""

    path: Path
    sha256: str
    model_type: str
    vocab_size: int
    special: SpecialTokens
    newline_id: int | None

    def processor(self) -> spm.SentencePieceProcessor:
        return spm.SentencePieceProcessor(model_file=str(self.path))


def _model_type(model: bytes) -> str:
    proto = model_pb2.ModelProto.FromString(model)
    return model_pb2.TrainerSpec.ModelType.Name(proto.trainer_spec.model_type).lower()


def read_tokenizer(path: Path | str) -> TokenizerInfo:
    """Open an existing model and read its special-token ids (each must exist as a control piece); a
    :class:`TokenizerError` naming the file otherwise."""
    path = Path(path)
    try:
        model = path.read_bytes()
        sp = spm.SentencePieceProcessor(model_proto=model)
    except (OSError, RuntimeError) as e:
        raise TokenizerError(f"--tokenizer {path}: cannot load a SentencePiece model ({e})") from e
    ids: dict[str, int] = {}
    for name, piece in SPECIAL_PIECES.items():
        i = sp.piece_to_id(piece)
        if sp.id_to_piece(i) != piece or not (sp.is_control(i) or sp.is_unknown(i)):
            raise TokenizerError(
                f"--tokenizer {path}: no special token {piece!r}; expected a model trained by megagrow-prep "
                f"(with pieces {', '.join(SPECIAL_PIECES.values())})"
            )
        ids[name] = i
    newline = sp.piece_to_id(NEWLINE_PIECE)
    return TokenizerInfo(
        path=path,
        sha256=sha256_file(path),
        model_type=_model_type(model),
        vocab_size=sp.vocab_size(),
        special=SpecialTokens(**ids),
        newline_id=newline if sp.id_to_piece(newline) == NEWLINE_PIECE else None,
    )


def newline_id(sp: spm.SentencePieceProcessor) -> int | None:
    """The id of the newline piece, None for a model without one."""
    i = sp.piece_to_id(NEWLINE_PIECE)
    return i if sp.id_to_piece(i) == NEWLINE_PIECE else None


def encode_paragraphs(sp: spm.SentencePieceProcessor, text: str, newline: int | None) -> np.ndarray:
    """Token ids of a document as the prepared data has them: its non-empty lines (paragraphs) encoded one by one,
    joined by ``newline`` (encoding paragraph by paragraph gives each paragraph's first word the pieces it had in
    training, where every paragraph was a sentence of its own)."""
    ids: list[int] = []
    for k, piece_ids in enumerate(sp.encode([p for p in text.split("\n") if p.strip()])):
        if k and newline is not None:
            ids.append(newline)
        ids.extend(piece_ids)
    return np.array(ids, dtype=np.int32)


__all__ = ["NEWLINE_PIECE", "SPECIAL_IDS", "SPECIAL_PIECES", "TokenizerError", "TokenizerInfo", "encode_paragraphs",
           "newline_id", "read_tokenizer"]
