"""``wiki_xml``: a MediaWiki XML dump (``*.xml``, ``*.xml.bz2``, a split ``*.bz2`` part).

Each article (namespace 0, not a redirect) is a document ``<dbname>:<page id>`` (e.g. ``enwiki:12``)
whose text is the title, a blank line, and the article converted by
:func:`~data_prep.wikitext.wikitext_to_text`. Parsing is streaming (:mod:`data_prep.wiki_xml`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from data_prep.readers.base import Document
from data_prep.wiki_xml import WikiDumpReader
from data_prep.wikitext import wikitext_to_text

__all__ = ["WikiDumpSource"]


class WikiDumpSource:
    kind = "wiki_xml"

    def __init__(self, path: Path):
        self.path = path
        self._reader = WikiDumpReader(path)
        self.skipped = self._reader.skipped
        self.replaced: Counter[str] = Counter()

    @property
    def sha256(self) -> str | None:
        return self._reader.sha256

    def documents(self) -> Iterator[Document]:
        for page in self._reader:
            body = wikitext_to_text(page.wikitext)
            yield Document(f"{self._reader.dbname or 'wiki'}:{page.page_id}", f"{page.title}\n\n{body}")
