"""``bookcorpus``: Toronto BookCorpus text, one sentence per line (``books_large_p1.txt`` ...).

The format has no book boundaries, so they are *inferred*, by this rule (the reader's choice):

* a blank line always ends a document (NVIDIA's and Google's BERT text format: one sentence per
  line, documents separated by an empty line), and
* otherwise a document is closed after ``lines_per_doc`` sentences (default 256, about a chapter),
  so the raw 74 M-line files become documents of bounded size instead of one giant one.

Each document keeps its sentences one per line (paragraphs, for the tokenizer and the sentence
splitter). Ids are ``<file name>:<first line number>``. Files may be bz2-compressed; a directory
is searched recursively for files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from data_prep.readers.base import Document, iter_lines
from data_prep.readers.files import FileTreeSource

__all__ = ["DEFAULT_LINES_PER_DOC", "BookCorpusSource"]

DEFAULT_LINES_PER_DOC = 256


class BookCorpusSource(FileTreeSource):
    kind = "bookcorpus"

    def __init__(self, path: Path, lines_per_doc: int = DEFAULT_LINES_PER_DOC):
        if lines_per_doc < 1:
            raise ValueError(f"lines_per_doc must be positive, got {lines_per_doc}")
        super().__init__(path, lambda p: True, "files")
        self.lines_per_doc = lines_per_doc

    def _file(self, file: Path) -> Iterator[Document]:
        rel = self._rel(file)
        lines: list[str] = []
        first = 0
        for lineno, line in iter_lines(file, self.replaced):
            line = line.strip()
            if line:
                if not lines:
                    first = lineno
                lines.append(line)
            if lines and (not line or len(lines) >= self.lines_per_doc):
                yield Document(f"{rel}:{first}", "\n".join(lines))
                lines = []
        if lines:
            yield Document(f"{rel}:{first}", "\n".join(lines))

