"""``wikiextractor``: the output of PyPI ``wikiextractor`` (3.x).

Accepted: a directory tree ``OUT/AA/wiki_00 ...`` (each file plain or bz2-compressed with ``-c``),
or single files, in either of its formats (detected per file from the first non-blank line):

* ``<doc id="12" url="..." title="Anarchism">`` blocks, closed by ``</doc>``; the first line inside
  is the title, kept as the first paragraph;
* ``--json`` lines ``{"id", ["revid",] "url", "title", "text"}`` (unknown keys ignored); the title
  becomes the first paragraph.

Document ids are the article ids (``12``). Empty articles (redirects, which wikiextractor keeps
unless ``--discard_empty``) are counted as ``empty_text``. A file that ends inside a ``<doc>`` or a
``<doc>`` line without an id is a :class:`PrepError` naming the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from data_prep.errors import PrepError
from data_prep.readers.base import Document, iter_lines
from data_prep.readers.files import FileTreeSource
from data_prep.readers.jsonl import parse_json_line

__all__ = ["WIKI_FILE", "WikiExtractorSource"]

#: wikiextractor's file names: ``wiki_00``, ``wiki_01.bz2`` ...
WIKI_FILE = re.compile(r"wiki_\d+(\.bz2)?")
_ATTR = re.compile(r'(\w+)="([^"]*)"')


class WikiExtractorSource(FileTreeSource):
    kind = "wikiextractor"

    def __init__(self, path: Path):
        super().__init__(
            path,
            lambda p: WIKI_FILE.fullmatch(p.name) is not None,
            "wikiextractor files (AA/wiki_00 ...)",
            "wikiextractor_other_files",
        )

    def _doc(self, doc_id: str, title: str, body: str) -> Iterator[Document]:
        if not body.strip():
            self.skipped["empty_text"] += 1
            return
        yield Document(doc_id, f"{title}\n\n{body}" if title else body)

    def _file(self, file: Path) -> Iterator[Document]:
        mode: str | None = None
        open_doc: tuple[str, str, int] | None = None  # id, title, line of <doc>
        lines: list[str] = []
        for lineno, line in iter_lines(file, self.replaced):
            if mode is None:
                if not line.strip():
                    continue
                mode = "json" if line.lstrip().startswith("{") else "doc"
            if mode == "json":
                if not line.strip():
                    continue
                where = f"{file} line {lineno}"
                rec = parse_json_line(line, where)
                if "text" not in rec or "id" not in rec:
                    raise PrepError(f"{where}: missing 'id' or 'text'; expected wikiextractor --json output")
                yield from self._doc(str(rec["id"]), str(rec.get("title") or ""), rec["text"] or "")
            elif open_doc is None:
                if line.startswith("<doc "):
                    attrs = dict(_ATTR.findall(line))
                    if "id" not in attrs:
                        raise PrepError(f"{file} line {lineno}: <doc> without an id attribute: {line[:120]!r}")
                    open_doc, lines = (attrs["id"], attrs.get("title", ""), lineno), []
                elif line.strip():
                    raise PrepError(
                        f"{file} line {lineno}: text outside a <doc> block ({line[:60]!r}); "
                        "expected wikiextractor output"
                    )
            elif line.strip() == "</doc>":
                doc_id, title, _ = open_doc
                if lines and title and lines[0].strip() == title:
                    lines = lines[1:]  # the title line wikiextractor repeats inside the block
                yield from self._doc(doc_id, title, "\n".join(lines))
                open_doc = None
            else:
                lines.append(line)
        if open_doc is not None:
            raise PrepError(
                f"{file}: ends inside <doc id={open_doc[0]!r}> opened at line {open_doc[2]}; the file is truncated"
            )
