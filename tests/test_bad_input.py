"""Bad input gets a clear error naming the file (and position), or a counted repair; never partial output."""

from __future__ import annotations

import bz2
import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_prep import shards as shards_module
from data_prep.build import BuildSettings, build_dataset
from data_prep.cli import main
from data_prep.errors import PrepError
from data_prep.readers import SourceSpec, open_source
from megagrow.data.shards import ShardedCorpus, ShardError

TEXT = "The quiet king remembers the old river. The bright poet sings of the northern sea. " * 4


def _settings(**kw) -> BuildSettings:
    return BuildSettings(**{"vocab_size": 300, "val_fraction": 0.3, "min_chars": 50, "workers": 1, **kw})


def _jsonl(path: Path, n: int = 20, extra: bytes = b"") -> Path:
    path.write_bytes(b"".join(json.dumps({"text": f"Doc {i}. {TEXT}"}).encode() + b"\n" for i in range(n)) + extra)
    return path


def test_corrupt_bz2_names_file_and_line(tmp_path: Path) -> None:
    data = bz2.compress(_jsonl(tmp_path / "a.jsonl").read_bytes())
    bad = tmp_path / "b.jsonl.bz2"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(PrepError, match=r"b.jsonl.bz2: cannot read past line \d+ .*corrupt or truncated"):
        list(open_source(SourceSpec(bad, "jsonl")).documents())


def _random_words(n: int, seed: int = 0) -> str:
    import random

    rng = random.Random(seed)
    return " ".join("".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(2, 9))) for _ in range(n))


def test_truncated_multiblock_bz2_gives_the_decompressed_offset(tmp_path: Path) -> None:
    """A dump cut inside its third 100 kB bz2 block: the error names the decompressed byte where reading
    stopped (all that the intact blocks hold) and the compressed byte reached."""
    pages = "".join(
        f"<page><title>T{i}</title><ns>0</ns><id>{i + 1}</id><revision><text>{_random_words(400, i)}</text>"
        "</revision></page>\n"
        for i in range(120)
    )
    xml = f"<mediawiki><siteinfo><dbname>x</dbname></siteinfo>\n{pages}</mediawiki>\n".encode()
    data = bz2.compress(xml, compresslevel=1)
    cut = data[: len(data) * 2 // 3]
    readable = len(bz2.BZ2Decompressor().decompress(cut))
    assert 0 < readable < len(xml)
    dump = tmp_path / "cut.xml.bz2"
    dump.write_bytes(cut)
    with pytest.raises(PrepError) as e:
        list(open_source(dump).documents())
    assert f"cut.xml.bz2: cannot read past decompressed byte {readable:,} (compressed byte " in str(e.value)
    assert f"of {len(cut):,}): Compressed file ended" in str(e.value)
    assert "corrupt or truncated" in str(e.value)

    lines = tmp_path / "cut.jsonl"  # line-based readers: the line and the decompressed byte where it starts
    raw = b"".join(json.dumps({"text": _random_words(300, i)}).encode() + b"\n" for i in range(300))
    lines_data = bz2.compress(raw, compresslevel=1)
    lines.with_suffix(".jsonl.bz2").write_bytes(lines_data[: len(lines_data) // 2])
    with pytest.raises(PrepError, match=r"cannot read past line (\d+) \(decompressed byte (\d+)\)") as e:
        list(open_source(SourceSpec(lines.with_suffix(".jsonl.bz2"), "jsonl")).documents())
    line, offset = (int(x) for x in re.search(r"line (\d+) \(decompressed byte (\d+)\)", str(e.value)).groups())
    readable = len(bz2.BZ2Decompressor().decompress(lines_data[: len(lines_data) // 2]))
    assert line > 0 and raw[:offset].count(b"\n") == line and offset == raw.rfind(b"\n", 0, readable) + 1


def test_truncated_parquet_and_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": ["1", "2"], "text": [TEXT, TEXT + "x"]}), path)
    (tmp_path / "cut.parquet").write_bytes(path.read_bytes()[:-20])
    with pytest.raises(PrepError, match="cut.parquet: not a readable Parquet file"):
        list(open_source(tmp_path / "cut.parquet").documents())
    with pytest.raises(PrepError, match="t.parquet: no column 'body'"):
        list(open_source(SourceSpec(path, "parquet", text_key="body")).documents())


def test_bad_json_and_truncated_wikiextractor(tmp_path: Path) -> None:
    with pytest.raises(PrepError, match="x.jsonl line 21: not valid JSON"):
        list(open_source(_jsonl(tmp_path / "x.jsonl", extra=b"{oops\n")).documents())
    w = tmp_path / "wiki_00"
    w.write_text('<doc id="1" url="u" title="T">\nT\n\nbody\n')
    with pytest.raises(PrepError, match="wiki_00: ends inside <doc id='1'> opened at line 1"):
        list(open_source(w).documents())


def test_non_utf8_and_empty_documents_are_counted(tmp_path: Path) -> None:
    extra = b'{"text": "caf\xe9 ' + TEXT.encode() + b'"}\n{"text": ""}\n{"text": "   "}\n'
    path = _jsonl(tmp_path / "d.jsonl", extra=extra)
    build_dataset([path], tmp_path / "out", _settings(), progress=False)
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["replaced"] == {"invalid_utf8": 1} and m["sources"][0]["replaced"] == {"invalid_utf8": 1}
    assert m["dropped"]["empty_text"] == 1 and m["dropped"]["empty"] == 1


def test_checksum_mismatch_and_truncated_shard(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    build_dataset([_jsonl(tmp_path / "d.jsonl", 40)], out, _settings(), progress=False)
    shard = out / json.loads((out / "manifest.json").read_text())["splits"]["train"]["files"][0]["path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the token values: the file still parses
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=f"{shard.name}: SHA-256 is"):
        ShardedCorpus.open(out, "train").verify()
    assert main(["inspect", str(out), "--verify"]) == 2
    assert f"{shard.name}: SHA-256 is" in capsys.readouterr().err
    shard.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ShardError, match=f"{shard.name}: size is"):
        ShardedCorpus.open(out, "train")


def test_interrupted_build_restarts_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _jsonl(tmp_path / "d.jsonl", 60)
    clean = tmp_path / "clean"
    build_dataset([src], clean, _settings(shard_tokens=500), progress=False)
    out = tmp_path / "out"
    real = shards_module.ShardWriter._finish_shard
    calls = {"n": 0}

    def failing(self: shards_module.ShardWriter) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("killed")
        real(self)

    monkeypatch.setattr(shards_module.ShardWriter, "_finish_shard", failing)
    with pytest.raises(OSError, match="killed"):
        build_dataset([src], out, _settings(shard_tokens=500), progress=False)
    assert not (out / "manifest.json").exists() and any(out.glob("*.arrow"))  # partial, but no manifest
    with pytest.raises(ShardError, match="no manifest.json"):
        ShardedCorpus.open(out, "train")
    monkeypatch.undo()
    build_dataset([src], out, _settings(shard_tokens=500), progress=False)
    a, b = (json.loads((d / "manifest.json").read_text()) for d in (clean, out))
    assert a["splits"] == b["splits"] and a["tokenizer"] == b["tokenizer"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in clean.iterdir())
    shutil.rmtree(clean)
