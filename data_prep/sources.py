"""Compatibility shim: the readers moved to :mod:`data_prep.readers` (one module per format)."""

from __future__ import annotations

from data_prep.readers import Document, Source, SourceSpec, open_source
from data_prep.readers.books import BOOK_SUFFIXES, BookSource
from data_prep.readers.wiki_xml import WikiDumpSource

__all__ = ["BOOK_SUFFIXES", "BookSource", "Document", "Source", "SourceSpec", "WikiDumpSource", "open_source"]
