"""A virtual token stream: the documents of a corpus concatenated, one separator after each.

Stream position layout for documents ``d_0, d_1, ...``::

    d_0[0] ... d_0[-1] SEP d_1[0] ... d_1[-1] SEP ...

Nothing is materialised: the stream keeps only the cumulative document starts (one int64 per
document) and assembles any window with :func:`numpy.searchsorted` plus slices of the documents
it touches, so it works on memory-mapped corpora with millions of documents.
"""

from __future__ import annotations

import numpy as np

from megagrow.data.corpus import TokenCorpus


class TokenStream:
    """Documents of ``corpus`` in corpus order, each followed by ``separator_id`` (EOS or SEP)."""

    def __init__(self, corpus: TokenCorpus, separator_id: int):
        if not 0 <= separator_id < corpus.vocab_size:
            raise ValueError(
                f"TokenStream: separator_id={separator_id} is outside the vocabulary [0, {corpus.vocab_size})"
            )
        lengths = np.asarray(corpus.doc_lengths, dtype=np.int64)
        if lengths.ndim != 1 or lengths.size == 0:
            raise ValueError(
                f"TokenStream: doc_lengths must be a non-empty 1-D array, got shape {lengths.shape}"
            )
        if (lengths < 0).any():
            bad = int(np.flatnonzero(lengths < 0)[0])
            raise ValueError(f"TokenStream: document {bad} has negative length {int(lengths[bad])}")
        self.corpus = corpus
        self.separator_id = int(separator_id)
        self._lengths = lengths
        # _starts[i] = stream position of document i's first token; _starts[-1] = stream length.
        self._starts = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(lengths + 1, out=self._starts[1:])

    def __len__(self) -> int:
        """Total number of tokens, separators included."""
        return int(self._starts[-1])

    @property
    def num_docs(self) -> int:
        return int(self._lengths.size)

    def read(self, start: int, length: int) -> np.ndarray:
        """Stream tokens ``[start, start + length)`` as a new int64 array (may span documents)."""
        if start < 0 or length < 0 or start + length > len(self):
            raise IndexError(
                f"TokenStream.read: window [{start}, {start + length}) is outside the stream [0, {len(self)})"
            )
        out = np.empty(length, dtype=np.int64)
        end = start + length
        pos = start
        doc = int(np.searchsorted(self._starts, start, side="right")) - 1
        while pos < end:
            doc_start = int(self._starts[doc])
            doc_end = doc_start + int(self._lengths[doc])  # stream position of this document's separator
            if pos < doc_end:
                take = min(doc_end, end) - pos
                offset = pos - doc_start
                piece = self.corpus.doc(doc)[offset : offset + take]
                if piece.shape[0] != take:
                    raise ValueError(
                        f"TokenStream: document {doc} has {len(self.corpus.doc(doc))} tokens but "
                        f"doc_lengths says {int(self._lengths[doc])}"
                    )
                out[pos - start : pos - start + take] = piece
                pos += take
            if pos == doc_end and pos < end:
                out[pos - start] = self.separator_id
                pos += 1
            doc += 1
        return out
