"""``parquet``: Parquet files with a text column, read row group by row group (bounded memory).

The Hugging Face ``wikimedia/wikipedia`` layout (``id, url, title, text``) is the default: the text
comes from ``text_key`` (``--text-key``), the id from ``id`` (else ``<file>:<row>``), and a
non-empty ``title`` becomes the first paragraph. With ``kind="bookcorpusopen"`` (``title, text``,
one book per row) the title is the document id and the text is read as a plain-text book.
A directory is searched recursively for ``*.parquet``. A file that is not Parquet or is truncated,
or lacks the column, is a :class:`PrepError` naming the file (and row group).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from data_prep.books import plain_book_to_text
from data_prep.errors import PrepError
from data_prep.readers.base import Document
from data_prep.readers.files import FileTreeSource

__all__ = ["ParquetSource"]


class ParquetSource(FileTreeSource):
    def __init__(self, path: Path, text_key: str = "text", kind: str = "parquet"):
        super().__init__(
            path, lambda p: p.suffix.lower() == ".parquet", "Parquet files (*.parquet)", "parquet_dir_other_files"
        )
        self.kind = kind
        self.text_key = text_key

    def _file(self, file: Path) -> Iterator[Document]:
        try:
            pf = pq.ParquetFile(file)
        except (OSError, pa.ArrowException) as e:
            raise PrepError(f"{file}: not a readable Parquet file ({e}); it may be truncated") from e
        names = pf.schema_arrow.names
        if self.text_key not in names:
            raise PrepError(f"{file}: no column {self.text_key!r} (columns: {', '.join(names)}); set --text-key")
        books = self.kind == "bookcorpusopen"
        columns = [c for c in (self.text_key, "id", "title") if c in names]
        rel = self._rel(file)
        row = 0
        for g in range(pf.num_row_groups):
            try:
                table = pf.read_row_group(g, columns=columns)
            except (OSError, pa.ArrowException) as e:
                raise PrepError(f"{file}: cannot read row group {g} (rows from {row}): {e}") from e
            data = {c: table.column(c).to_pylist() for c in columns}
            for k, text in enumerate(data[self.text_key]):
                title = data["title"][k] if "title" in data else None
                ident = data["id"][k] if "id" in data else None
                if not text:
                    self.skipped["empty_text"] += 1
                elif books:
                    yield Document(str(title) if title else f"{rel}:{row + k}", plain_book_to_text(text))
                else:
                    if title and str(title).strip():
                        text = f"{title}\n\n{text}"
                    yield Document(str(ident) if ident is not None else f"{rel}:{row + k}", text)
            row += table.num_rows
