"""Train/validation of the text a user actually has: one plain-text file (or a few) is split by blocks of
paragraphs, stated in the manifest; the split, tokenizer and inspect messages say what works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep.build import BuildSettings, build_dataset
from data_prep.cli import main
from data_prep.errors import PrepError
from data_prep.split import block_hash, needs_blocks, paragraph_blocks, validation_blocks
from megagrow.data.shards import ShardedCorpus
from tests.conftest import make_text_corpus


def notes_file(tmp_path: Path, n_docs: int = 30) -> Path:
    """One plain-text file of ~40k characters in ~180 paragraphs (blank-line separated)."""
    books = make_text_corpus(tmp_path / "parts", n_docs=n_docs)
    path = tmp_path / "notes.txt"
    path.write_text("\n\n".join(p.read_text() for p in sorted(books.iterdir())))
    return path


def _settings(**kw) -> BuildSettings:
    return BuildSettings(**{"vocab_size": 300, "min_chars": 50, "workers": 1, **kw})


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# --- the pure pieces ---------------------------------------------------------------------------


def test_paragraph_blocks_are_exact_slices_of_whole_paragraphs() -> None:
    paras = [f"Paragraph {i} says something about the sea. It goes on a while." for i in range(40)]
    text = "\n\n".join(paras)
    blocks = paragraph_blocks(text, 300)
    assert len(blocks) > 5
    for b in blocks:
        assert b.text == text[b.start : b.end] and b.text == b.text.strip()
    assert all(len(b.text) >= 300 for b in blocks)
    assert "".join(b.text for b in blocks).replace("\n", "") == text.replace("\n", "")  # all text, in order
    assert all(b.text.startswith("Paragraph") and b.text.endswith("while.") for b in blocks)  # whole paragraphs
    assert [b.block_id("n.txt") for b in blocks[:1]] == [f"n.txt@0-{blocks[0].end}"]


def test_paragraph_blocks_cut_long_paragraphs_between_sentences_then_at_spaces() -> None:
    one_line = " ".join(f"Sentence number {i} is here." for i in range(200))
    blocks = paragraph_blocks(one_line, 500)
    assert len(blocks) > 5 and all(b.text.startswith("Sentence") and b.text.endswith(".") for b in blocks)
    no_punct = " ".join(f"word{i}" for i in range(2000))
    blocks = paragraph_blocks(no_punct, 500)
    assert len(blocks) > 5
    assert " ".join(b.text for b in blocks) == no_punct  # cut only at spaces
    assert paragraph_blocks("short", 1000)[0].text == "short"
    assert paragraph_blocks("  \n\n ", 1000) == []


def test_needs_blocks_and_validation_blocks() -> None:
    assert needs_blocks(1000, 10, 0.01) is None
    assert needs_blocks(5, 0, 0.0) is None  # no validation asked for
    assert "fewer than 1 / val_fraction = 100" in needs_blocks(30, 0, 0.01)
    assert "none of the 200 documents" in needs_blocks(200, 0, 0.01)
    assert "all 3 documents" in needs_blocks(3, 3, 0.5)
    hashes = [block_hash(f"n.txt@{i}") for i in range(50)]
    val = validation_blocks(hashes, 0.1)
    assert val == set(sorted(hashes)[:5])
    assert len(validation_blocks(hashes, 0.001)) == 1  # at least one
    assert len(validation_blocks(hashes[:2], 0.9)) == 1  # train keeps at least one
    with pytest.raises(PrepError, match=r"1 block\(s\).*build without validation \(--val-fraction 0\)"):
        validation_blocks(hashes[:1], 0.01)


# --- builds ------------------------------------------------------------------------------------


def test_one_text_file_builds_train_and_validation_by_blocks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    notes = notes_file(tmp_path)
    out = tmp_path / "data"
    argv = ["-q", "build", "--input", str(notes), "--out", str(out), "--vocab-size", "300", "--workers", "1",
            "--val-fraction", "0.05"]
    assert main(argv) == 0
    assert "split: by blocks of paragraphs (1 document(s), fewer than 1 / val_fraction = 20)" in capsys.readouterr().out
    m = _manifest(out)
    split = m["settings"]["split"]
    assert split["by"] == "paragraph_blocks" and split["block_chars"] == 1000
    assert split["n_validation_blocks"] == round(0.05 * split["n_blocks"]) >= 2
    assert m["splits"]["validation"]["n_docs"] == split["n_validation_blocks"]
    assert m["splits"]["train"]["n_docs"] == split["n_blocks"] - split["n_validation_blocks"]
    assert m["sources"][0]["n_docs_kept"] == 1 and m["sources"][0]["n_docs"] == split["n_blocks"]
    train, val = ShardedCorpus.open(out, "train"), ShardedCorpus.open(out, "validation")
    ids = [train.doc_id(i) for i in range(train.n_docs)] + [val.doc_id(i) for i in range(val.n_docs)]
    assert all(i.startswith("notes.txt@") for i in ids) and len(set(ids)) == len(ids)
    ranges = sorted(tuple(map(int, i.split("@")[1].split("-"))) for i in ids)
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False))  # disjoint: no leakage


def test_enough_documents_still_split_by_document(tmp_path: Path) -> None:
    out = tmp_path / "data"
    build_dataset([make_text_corpus(tmp_path / "books", n_docs=40)], out, _settings(val_fraction=0.2),
                  progress=False)
    assert _manifest(out)["settings"]["split"] == {"by": "document"}
    assert not any("@" in ShardedCorpus.open(out, "validation").doc_id(i) for i in range(3))


def test_documents_that_all_hash_to_train_fall_back_to_blocks(tmp_path: Path) -> None:
    """What used to be the error "the validation split is empty": now a block split, stated."""
    out = tmp_path / "data"
    build_dataset([make_text_corpus(tmp_path / "books", n_docs=6)], out, _settings(val_fraction=0.2),
                  progress=False)  # 6 * 0.2 >= 1 document expected, but no id hashes below 0.2
    split = _manifest(out)["settings"]["split"]
    assert split["by"] == "paragraph_blocks" and "none of the 6 documents hashed below" in split["reason"]
    assert _manifest(out)["splits"]["validation"]["n_docs"] >= 1


def test_weighted_copies_of_a_block_stay_in_its_split(tmp_path: Path) -> None:
    out = tmp_path / "data"
    build_dataset([f"text:{notes_file(tmp_path)}:2"], out, _settings(val_fraction=0.1), progress=False)
    split_of = {}
    for name in ("train", "validation"):
        c = ShardedCorpus.open(out, name)
        split_of.update({c.doc_id(i): name for i in range(c.n_docs)})
    originals = [i for i in split_of if "#" not in i]
    assert len(split_of) == 2 * len(originals)
    assert all(split_of[f"{i}#1"] == split_of[i] for i in originals)


def test_too_little_text_names_a_fix_that_works(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    short = tmp_path / "short.txt"
    short.write_text("Only one paragraph of notes, long enough to be kept by the length filter. " * 5)
    with pytest.raises(PrepError, match=r"too little text .*--val-fraction 0"):
        build_dataset([short], tmp_path / "a", _settings(), progress=False)
    build_dataset([short], tmp_path / "a", _settings(val_fraction=0.0), progress=False)  # the fix works
    assert list(_manifest(tmp_path / "a")["splits"]) == ["train"]


def test_vocab_too_large_for_the_text_names_a_size_that_works(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    notes = notes_file(tmp_path, n_docs=4)
    out = tmp_path / "data"
    assert main(["-q", "build", "--input", str(notes), "--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "the text has too few distinct pieces for 8000; use --vocab-size" in err
    size = err.split("use --vocab-size ")[1].split()[0]
    assert main(["-q", "build", "--input", str(notes), "--out", str(out), "--workers", "1", "--vocab-size", size]) == 0


def test_inspect_verify_says_what_it_verified(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "data"
    build_dataset([notes_file(tmp_path)], out, _settings(val_fraction=0.05), progress=False)
    capsys.readouterr()
    assert main(["inspect", str(out), "--verify", "--samples", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"verified 3 files: every SHA-256 matches {out / 'manifest.json'}" in printed  # 2 shards + tokenizer
    assert "split: by blocks of paragraphs" in printed
    assert main(["inspect", str(out), "--samples", "1"]) == 0
    assert "verified" not in capsys.readouterr().out
