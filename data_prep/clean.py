"""Document cleaning: Unicode and whitespace normalization, a minimum length, exact de-duplication.

Every document turned away is counted by reason in :attr:`DocumentFilter.dropped`, which ends up
in the manifest's ``dropped`` table.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["DocumentFilter", "normalize_text"]

# C0/C1 control characters other than tab and newline, the BOM and zero-width spaces.
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufeff\u200b\u2060]")
_HSPACE = re.compile(r"[^\S\n]+")  # any whitespace but newline: tabs, NBSP, thin spaces, U+2028, ...
_AROUND_NEWLINE = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC-normalize, unify line endings, drop invisible characters, collapse horizontal whitespace
    to one space, strip lines, and keep at most one blank line between paragraphs."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _INVISIBLE.sub("", text)
    text = _AROUND_NEWLINE.sub("\n", _HSPACE.sub(" ", text))
    return _BLANK_LINES.sub("\n\n", text).strip()


@dataclass
class DocumentFilter:
    """Normalizes documents and rejects empty, short and exactly duplicated ones.

    Duplicates are detected on the normalized text by a 64-bit prefix of its SHA-256 (8 bytes a
    document in memory; a false match among 10^7 documents has probability ~3e-6).
    """

    min_chars: int
    dropped: Counter[str] = field(default_factory=Counter)
    _seen: set[int] = field(default_factory=set, repr=False)

    def __call__(self, text: str) -> str | None:
        """The normalized text, or None if the document is dropped (and counted)."""
        text = normalize_text(text)
        if not text:
            self.dropped["empty"] += 1
            return None
        if len(text) < self.min_chars:
            self.dropped["too_short"] += 1
            return None
        key = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
        if key in self._seen:
            self.dropped["duplicate"] += 1
            return None
        self._seen.add(key)
        return text
