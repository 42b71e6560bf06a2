"""The benchmark corpus (~48 MB of running English prose) from Debian's archive, as plain-text files.

Sources (see ../shared/notes/corpora.md): Jane Austen's six novels (r-cran-janeaustenr), the King James
Bible (sword-text-kjv, read with pysword from the ``bench`` extra), FOLDOC,
the Jargon File and the Devil's Dictionary (dict-*), the Linux kernel, Python 3.11 and Perl
documentation prose (linux-doc-6.1, python3.11-doc, perl-doc). Packages are fetched with
``apt-get download`` by name (their versions move with point releases), unpacked with ``dpkg-deb``
and filtered to paragraphs of prose: one ``.txt`` file per book/entry group/page, paragraphs separated
by blank lines, under ``<cache>/bench/text/<source>/``.

    python -m benchmarks.bench_corpus [DIR]      # prints the directory and its size
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

PACKAGES = ["r-cran-janeaustenr", "dict-foldoc", "dict-jargon", "dict-devil", "sword-text-kjv", "linux-doc-6.1",
            "python3.11-doc", "perl-doc"]
_WORD = re.compile(r"[A-Za-z]+")


def cache_dir() -> Path:
    return Path(os.environ.get("MEGAGROW_CACHE") or Path.home() / ".cache" / "megagrow") / "bench"


def _prose(paragraph: str, min_words: int = 8) -> bool:
    """Running prose: enough words, mostly alphabetic tokens, ends like a sentence."""
    words = paragraph.split()
    if len(words) < min_words:
        return False
    alpha = sum(bool(_WORD.fullmatch(w.strip(".,;:!?()\"'"))) for w in words)
    return alpha >= 0.6 * len(words) and paragraph.rstrip().rstrip("\"'”’)]")[-1:] in ".!?"


def _paragraphs(text: str) -> Iterator[str]:
    for block in re.split(r"\n\s*\n", text):
        p = " ".join(line.strip() for line in block.splitlines() if line.strip())
        if p:
            yield p


def _r_character_vector(raw: bytes) -> list[str] | None:
    """Lines of an R XDR-serialized character vector (STRSXP), or None for any other object."""
    pos = 2

    def i32() -> int:
        nonlocal pos
        (v,) = struct.unpack(">i", raw[pos:pos + 4])
        pos += 4
        return v

    version = i32()
    i32(), i32()  # writer version, minimal reader version
    if version == 3:
        skip = i32()  # native-encoding name (read first: `pos += i32()` would lose i32's own advance)
        pos += skip
    if i32() & 0xFF != 16:
        return None
    lines = []
    for _ in range(i32()):
        i32()  # CHARSXP flags
        n = i32()  # length, -1 = NA
        lines.append(raw[pos:pos + max(n, 0)].decode("utf-8", "replace"))
        pos += max(n, 0)
    return lines


def austen(root: Path) -> Iterator[tuple[str, str]]:
    """Austen's six novels from the R package's ``Rdata.rdb``: [4-byte length][zlib stream] records."""
    data, pos, n = (root / "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb").read_bytes(), 0, 0
    while pos < len(data):
        d = zlib.decompressobj()
        raw = d.decompress(data[pos + 4:])
        pos = len(data) - len(d.unused_data)
        lines = _r_character_vector(raw) if raw[:2] == b"X\n" else None
        if lines:
            n += 1
            yield f"austen-{n}", "\n".join(lines)


def kjv(root: Path) -> Iterator[tuple[str, str]]:
    """The King James Bible, one document per book (pysword reads the SWORD module; the `bench` extra)."""
    from pysword.modules import SwordModules

    modules = SwordModules(str(root / "usr/share/sword"))
    modules.parse_modules()
    bible = modules.get_bible_from_module("engKJV2006eb")
    for testament in bible.get_structure().get_books().values():
        for book in testament:
            chapters = [bible.get(books=[book.name], chapters=[c], clean=True, join=" ")
                        for c in range(1, book.num_chapters + 1)]
            yield f"kjv-{book.name}", "\n\n".join(chapters)


def dictd(root: Path, name: str) -> Iterator[tuple[str, str]]:
    with gzip.open(root / f"usr/share/dictd/{name}.dict.dz", "rt", encoding="utf-8", errors="replace") as f:
        text = f.read()
    entries = re.split(r"\n(?=\S)", text)  # headword at column 0, body indented
    chunk, k = [], 0
    for e in entries:
        if e.startswith("00-database"):
            continue
        body = re.sub(r"[{}]", "", e)
        body = re.sub(r"\(\d{4}-\d{2}-\d{2}\)", "", body)
        chunk.append(body)
        if len(chunk) == 200:
            k += 1
            yield f"{name}-{k:04d}", "\n\n".join(chunk)
            chunk = []
    if chunk:
        yield f"{name}-{k + 1:04d}", "\n\n".join(chunk)


_RST_DIRECTIVE = re.compile(r"^\s*\.\. (code-block|literalinclude|toctree|math|highlight|image|figure|csv-table|"
                            r"list-table|table|only|raw|index|_)")


def rst(path: Path) -> str:
    out, skip_indent = [], None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if skip_indent is not None:
            if line.strip() and (len(line) - len(line.lstrip())) <= skip_indent:
                skip_indent = None
            else:
                continue
        if _RST_DIRECTIVE.match(line) or line.rstrip().endswith("::"):
            skip_indent = len(line) - len(line.lstrip())
            if line.rstrip().endswith("::") and not _RST_DIRECTIVE.match(line):
                out.append(line.rstrip()[:-1])
            continue
        if re.fullmatch(r"\s*([=\-~^*#+\"'`])\1{2,}\s*", line) or line.lstrip().startswith(("|", "+-", "..")):
            continue
        out.append(re.sub(r":[a-z:]+:`([^`<]*)(<[^>]*>)?`", r"\1", line).replace("``", ""))
    return "\n".join(out)


def pod(path: Path) -> str:
    out = []
    for para in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
        if para.startswith("=") or para.startswith((" ", "\t")):
            continue
        out.append(re.sub(r"[A-Z]<+([^<>]*)>+", r"\1", para))
    return "\n\n".join(out)


def documents(root: Path) -> Iterator[tuple[str, str, str]]:
    """(source, doc name, raw text) for every document of the corpus."""
    for name, text in austen(root):
        yield "austen", name, text
    for name, text in kjv(root):
        yield "kjv", name, text
    for d in ("foldoc", "jargon", "devil"):
        for name, text in dictd(root, d):
            yield "dict", name, text
    linux = root / "usr/share/doc/linux-doc-6.1/html/_sources"
    for p in sorted(linux.rglob("*.txt")):
        if "translations" not in p.parts:
            yield "linux-doc", str(p.relative_to(linux)), rst(p)
    py = root / "usr/share/doc/python3.11/html/_sources"
    for p in sorted(py.rglob("*.rst.txt")):
        if "changelog" not in p.name:
            yield "python-doc", str(p.relative_to(py)), rst(p)
    for p in sorted((root / "usr/share/perl").rglob("*.pod")):
        yield "perl-doc", p.name, pod(p)


def build(out: Path | None = None) -> Path:
    """Fetch, unpack and filter; returns the text directory (rebuilt only when missing)."""
    out = out or cache_dir() / "text"
    if (out / ".complete").exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=tmpd, check=True, capture_output=True)
        for deb in tmpd.glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmpd / "x")], check=True)
        staging = out.with_name(out.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        for source, name, text in documents(tmpd / "x"):
            paras = [p for p in _paragraphs(text) if _prose(p)]
            if not paras:
                continue
            dest = staging / source / (re.sub(r"[^A-Za-z0-9._-]+", "_", name) + ".txt")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text("\n\n".join(paras) + "\n", encoding="utf-8")
        (staging / ".complete").write_text("ok\n")
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_corpus", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", nargs="?", type=Path, default=None, help="the text directory (default: <cache>/bench/text)")
    out = build(p.parse_args(argv).out)
    files = [p for p in out.rglob("*.txt")]
    size = sum(p.stat().st_size for p in files)
    print(f"{out}: {len(files)} files, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
