"""``jsonl``: JSON Lines, one document per line — Megatron-LM's "loose JSON" (``{"text": ...}``).

The text is read from ``text_key`` (default ``text``; ``--text-key``); other keys are ignored except
``id`` (the document id when present, else ``<file>:<line>``) and ``title`` (when present and not
empty it becomes the first paragraph, as for the other Wikipedia formats). Files may be
bz2-compressed; a directory is searched recursively for ``*.jsonl``/``*.json`` (and ``.bz2``) files.
A line that is not a JSON object, or lacks the text key, is a :class:`PrepError` naming the file,
line and key; a null or empty text is counted as ``empty_text``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.errors import PrepError
from data_prep.readers.base import Document, iter_lines
from data_prep.readers.files import FileTreeSource

__all__ = ["JSONL_SUFFIXES", "JsonlSource", "parse_json_line"]

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.bz2", ".json.bz2", ".ndjson")


def parse_json_line(line: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise PrepError(f"{where}: not valid JSON ({e}); expected one JSON object per line") from e
    if not isinstance(record, dict):
        raise PrepError(f"{where}: a JSON {type(record).__name__}, expected an object per line")
    return record


class JsonlSource(FileTreeSource):
    kind = "jsonl"

    def __init__(self, path: Path, text_key: str = "text", title_key: str | None = "title"):
        super().__init__(
            path,
            lambda p: p.name.lower().endswith(JSONL_SUFFIXES),
            "JSON Lines files (*.jsonl, *.json)",
            "jsonl_dir_other_files",
        )
        self.text_key = text_key
        self.title_key = title_key

    def _file(self, file: Path) -> Iterator[Document]:
        rel = self._rel(file)
        for lineno, line in iter_lines(file, self.replaced):
            if not line.strip():
                continue
            where = f"{file} line {lineno}"
            record = parse_json_line(line, where)
            if self.text_key not in record:
                raise PrepError(
                    f"{where}: no key {self.text_key!r} (keys: {', '.join(sorted(record)) or 'none'}); "
                    "set --text-key"
                )
            text = record[self.text_key]
            if text is None or text == "":
                self.skipped["empty_text"] += 1
                continue
            if not isinstance(text, str):
                raise PrepError(f"{where}: {self.text_key!r} is a {type(text).__name__}, expected a string")
            title = record.get(self.title_key) if self.title_key else None
            if isinstance(title, str) and title.strip():
                text = f"{title}\n\n{text}"
            doc_id = record.get("id")
            yield Document(str(doc_id) if doc_id is not None else f"{rel}:{lineno}", text)
