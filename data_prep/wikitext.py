"""Wikitext (MediaWiki markup) to plain text.

:func:`wikitext_to_text` turns the raw ``<text>`` of a dump page into running prose: paragraphs
separated by a blank line, headings kept as their own one-line paragraph. Nested constructs
(templates, tables, links, paired HTML elements) are matched with small stack-based scanners
rather than regular expressions, so run time stays linear in the input and an unbalanced ``{{``
or ``[[`` is kept as literal text instead of swallowing the rest of the article. The regular
expressions used for flat constructs (tags, external links, quote marks) have no nested
quantifiers.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

__all__ = ["DROPPED_SECTIONS", "wikitext_to_text"]

#: Sections whose body is only references or pointers elsewhere; dropped with their heading,
#: up to the next heading of the same or a higher level. Compared case-insensitively.
DROPPED_SECTIONS = frozenset(
    {
        "references",
        "external links",
        "see also",
        "further reading",
        "notes",
        "notes and references",
        "references and notes",
        "footnotes",
        "citations",
        "sources",
        "bibliography",
    }
)

# Elements dropped together with everything inside them (references, formulas, galleries, ...).
_DROPPED_ELEMENTS = (
    "ref",
    "references",
    "gallery",
    "math",
    "chem",
    "ce",
    "score",
    "timeline",
    "imagemap",
    "graph",
    "mapframe",
    "maplink",
    "templatedata",
    "syntaxhighlight",
    "source",
    "table",
    "hiero",
    "inputbox",
    "categorytree",
)
_ELEMENT_TAG = re.compile(r"<(/?)(" + "|".join(_DROPPED_ELEMENTS) + r")\b([^<>]*)>", re.IGNORECASE)

# Tags whose element is inline text formatting: removed without leaving a space.
_INLINE_TAGS = frozenset(
    "b i u s em strong small big sub sup span abbr code tt var font nowiki del ins mark kbd samp q "
    "strike cite bdi dfn".split()
)
_ANY_TAG = re.compile(r"</?([A-Za-z][A-Za-z0-9]*)\b[^<>]*>")

# Link targets whose namespace makes the whole link disappear from the text.
_DROPPED_NAMESPACES = frozenset(
    "file image media category datei bild kategorie fichier catégorie archivo imagen categoría "
    "immagine categoria plik kategoria bestand categorie файл категория".split()
)
_LANGUAGE_PREFIX = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]+)*|simple")

_EXTERNAL_LINK = re.compile(r"\[(?:https?:|ftp:|//)[^\s\[\]]*(?:[ \t]+([^\[\]\n]*))?\]", re.IGNORECASE)
_QUOTES = re.compile(r"'{2,}")
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
_EMPTY_PARENS = re.compile(r"\([\s,;:]*\)")
_SPACES = re.compile(r"[ \t\u00a0\u2009\u202f]+")
_SPACE_BEFORE_PUNCT = re.compile(r" +([,.;:!?])")
_HAS_WORD = re.compile(r"\w")


def wikitext_to_text(s: str) -> str:
    """Convert MediaWiki markup to plain text.

    Removed: HTML comments; ``<ref>`` elements (paired and self-closing) and other elements that
    hold no running prose (``<math>``, ``<gallery>``, ``<table>``, ``<timeline>``, ...);
    templates ``{{...}}`` including nested ones and infoboxes spanning many lines; tables
    ``{| ... |}`` (nested too); file/image links (``[[File:...]]``, ``[[Image:...]]``,
    ``[[Datei:...]]``, ... including nested links in their captions); category and
    interlanguage links; bare external links ``[http://x]``; bold/italic quote marks; magic
    words such as ``__TOC__``; list markers (``*``, ``#``, ``:``, ``;``); horizontal rules; and
    the sections listed in :data:`DROPPED_SECTIONS` (References, External links, See also,
    Further reading, Notes, ...), which are only lists of references.

    Kept: the inner text of other HTML tags (``<b>x</b>`` -> ``x``), link anchor text
    (``[[a|b]]`` -> ``b``, ``[[a]]`` -> ``a``, ``[[a]]s`` -> ``as``), external link labels
    (``[http://x label]`` -> ``label``), and headings (``== H ==`` -> a paragraph ``H``).
    HTML entities are unescaped, runs of spaces collapsed, and paragraphs separated by exactly
    one blank line; a paragraph left without any word character is dropped.
    """
    s = _remove_comments(s)
    s = _remove_spans(s, _element_spans(s))
    s = _remove_spans(s, _template_and_table_spans(s))
    s = _convert_links(s)
    s = _EXTERNAL_LINK.sub(lambda m: m.group(1) or "", s)
    s = _ANY_TAG.sub(lambda m: "" if m.group(1).lower() in _INLINE_TAGS else " ", s)
    s = _QUOTES.sub("", s)
    s = _MAGIC_WORD.sub("", s)
    s = html.unescape(s)
    return "\n\n".join(_paragraphs(s.splitlines()))


# ----------------------------------------------------------------------------------------------
# Flat removals


def _remove_comments(s: str) -> str:
    """Drop ``<!-- ... -->``; an unterminated comment runs to the end of the text (as in MediaWiki)."""
    out: list[str] = []
    pos = 0
    while True:
        start = s.find("<!--", pos)
        if start < 0:
            out.append(s[pos:])
            break
        out.append(s[pos:start])
        end = s.find("-->", start + 4)
        if end < 0:
            break
        pos = end + 3
    return "".join(out)


def _remove_spans(s: str, spans: list[tuple[int, int]]) -> str:
    """Remove the given disjoint, sorted ``[start, end)`` spans from ``s``."""
    if not spans:
        return s
    out: list[str] = []
    pos = 0
    for start, end in spans:
        out.append(s[pos:start])
        pos = end
    out.append(s[pos:])
    return "".join(out)


def _outermost(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The union of properly nested spans, as sorted disjoint spans."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


# ----------------------------------------------------------------------------------------------
# Nested constructs: each scanner pairs openers with closers on a stack. A closer only closes the
# innermost open construct of its own kind; openers never closed stay literal text.


def _element_spans(s: str) -> list[tuple[int, int]]:
    """Spans of the dropped elements (``<ref>...</ref>``, ``<ref name=x/>``, ``<math>...``)."""
    spans: list[tuple[int, int]] = []
    stack: list[tuple[str, int]] = []
    for m in _ELEMENT_TAG.finditer(s):
        closing, name, attrs = m.group(1), m.group(2).lower(), m.group(3)
        if closing:
            if stack and stack[-1][0] == name:
                spans.append((stack.pop()[1], m.end()))
        elif attrs.rstrip().endswith("/"):
            spans.append((m.start(), m.end()))
        elif not stack or stack[-1][0] != "math":  # <math> content is TeX, not markup
            stack.append((name, m.start()))
    return _outermost(spans)


_BRACE_TOKEN = re.compile(r"\{\{|\}\}|\{\||\|\}")


def _at_line_start(s: str, pos: int) -> bool:
    """Whether only spaces, tabs or ``:`` indentation precede ``pos`` on its line."""
    i = pos - 1
    while i >= 0 and s[i] in " \t:":
        i -= 1
    return i < 0 or s[i] == "\n"


def _template_and_table_spans(s: str) -> list[tuple[int, int]]:
    """Spans of templates ``{{...}}`` and tables ``{|...|}`` (a table opens only at a line start)."""
    spans: list[tuple[int, int]] = []
    stack: list[tuple[str, int]] = []
    pos = 0
    while (m := _BRACE_TOKEN.search(s, pos)) is not None:
        tok, start = m.group(), m.start()
        top = stack[-1][0] if stack else None
        if tok == "{{":
            stack.append(("template", start))
            pos = start + 2
        elif tok == "{|" and _at_line_start(s, start):
            stack.append(("table", start))
            pos = start + 2
        elif tok == "}}" and top == "template":
            spans.append((stack.pop()[1], start + 2))
            pos = start + 2
        elif tok == "|}" and top == "table":
            spans.append((stack.pop()[1], start + 2))
            pos = start + 2
        else:
            # Not a delimiter here (e.g. the "|}" inside "{{x|}}"): look again one character on.
            pos = start + 1
    return _outermost(spans)


def _link_spans(s: str) -> list[tuple[int, int]]:
    """Spans of the outermost ``[[...]]`` links."""
    spans: list[tuple[int, int]] = []
    stack: list[int] = []
    pos = 0
    i, j = s.find("[["), s.find("]]")
    while True:
        # Search again only once passed (a fresh search each step would be quadratic).
        if 0 <= i < pos:
            i = s.find("[[", pos)
        if 0 <= j < pos:
            j = s.find("]]", pos)
        if i < 0 and j < 0:
            break
        if i >= 0 and (j < 0 or i < j):
            stack.append(i)
            pos = i + 2
        else:
            if stack:
                spans.append((stack.pop(), j + 2))
            pos = j + 2
    return _outermost(spans)


_MAX_LINK_NESTING = 8


def _convert_links(s: str, depth: int = 0) -> str:
    """Replace each ``[[...]]`` by its visible text (or nothing for files, categories, languages)."""
    if depth > _MAX_LINK_NESTING:  # absurdly nested anchors: keep their text, drop the brackets
        return s.replace("[[", "").replace("]]", "")
    spans = _link_spans(s)
    if not spans:
        return s
    out: list[str] = []
    pos = 0
    for start, end in spans:
        out.append(s[pos:start])
        out.append(_link_text(s[start + 2 : end - 2], depth))
        pos = end
    out.append(s[pos:])
    return "".join(out)


def _link_text(inner: str, depth: int) -> str:
    target, bar, anchor = inner.partition("|")
    target = target.strip()
    prefix, colon, _ = target.partition(":")
    prefix = prefix.strip().lower()
    if colon and not target.startswith(":"):
        if prefix in _DROPPED_NAMESPACES:
            return ""
        if not bar and _LANGUAGE_PREFIX.fullmatch(prefix):
            return ""  # interlanguage link
    if bar:
        anchor = anchor.strip()
        # "[[Help:Contents|]]" (pipe trick) shows the target without its namespace.
        return _convert_links(anchor, depth + 1) if anchor else target.lstrip(":").partition(":")[2] or target
    return target.lstrip(":")


# ----------------------------------------------------------------------------------------------
# Line layout: headings, lists, dropped sections, paragraphs.


def _heading(line: str) -> tuple[int, str] | None:
    """``(level, text)`` if ``line`` is a heading such as ``== History ==``."""
    stripped = line.strip()
    if len(stripped) < 3 or stripped[0] != "=" or stripped[-1] != "=":
        return None
    lead = len(stripped) - len(stripped.lstrip("="))
    trail = len(stripped) - len(stripped.rstrip("="))
    level = min(lead, trail, 6)
    text = stripped[level:-level].strip()
    return (level, text) if text else None


def _paragraphs(lines: list[str]) -> list[str]:
    paragraphs: list[str] = []
    current: list[str] = []
    skip_level = 0  # > 0 while inside a dropped section of that heading level

    def flush() -> None:
        if current:
            text = _clean_inline(" ".join(current))
            if _HAS_WORD.search(text):
                paragraphs.append(text)
            current.clear()

    for line in lines:
        heading = _heading(line)
        if heading is not None:
            flush()
            level, text = heading
            if skip_level and level > skip_level:
                continue
            skip_level = 0
            if _clean_inline(text).lower() in DROPPED_SECTIONS:
                skip_level = level
            else:
                current.append(text)
                flush()
            continue
        if skip_level:
            continue
        stripped = line.strip()
        if not stripped or set(stripped) == {"-"}:  # blank line or horizontal rule "----"
            flush()
        elif stripped[0] in "*#:;":
            flush()
            current.append(stripped.lstrip("*#:; \t"))
            flush()
        else:
            current.append(stripped)
    flush()
    return paragraphs


def _clean_inline(text: str) -> str:
    text = _SPACES.sub(" ", text)
    text = _EMPTY_PARENS.sub("", text)
    text = _SPACES.sub(" ", text)
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text).strip()
