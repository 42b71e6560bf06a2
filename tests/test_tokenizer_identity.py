"""Tokenizer identity end to end: two tokenizers of the SAME vocabulary size are told apart by resume, eval,
export and init_from (comparing vocabulary sizes let `eval --data OTHER` print a meaningless loss)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep.build import BuildSettings, build_dataset
from megagrow.checkpointing.resume import ResumeRefused
from megagrow.cli import main
from megagrow.data.manifest import sha256_file
from tests.conftest import make_text_corpus
from tests.trainutil import run, tiny_config


@pytest.fixture(scope="module")
def datasets(text_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``same``: other text, tokenized with text_data's tokenizer; ``other``: other text and its own tokenizer of
    the same vocabulary size (400)."""
    base = tmp_path_factory.mktemp("tok")
    books = make_text_corpus(base / "books", n_docs=30, seed=7)
    out = {}
    for name, tok in (("same", text_data / "tokenizer.model"), ("other", None)):
        out[name] = base / name
        build_dataset([books], out[name], BuildSettings(vocab_size=400, val_fraction=0.2, min_chars=50, workers=1,
                                                       tokenizer=tok), progress=False)
    a, b = (json.loads((d / "manifest.json").read_text())["tokenizer"] for d in (text_data, out["other"]))
    assert a["vocab_size"] == b["vocab_size"] and a["sha256"] != b["sha256"]  # same size, other pieces
    return out


def test_eval_on_data_with_another_tokenizer_is_refused_naming_both(text_data: Path, datasets: dict[str, Path],
                                                                    tmp_path: Path, capsys) -> None:
    done = run(tiny_config("gpt", tmp_path, "a", "--train.max_steps=2", data_path=text_data))
    assert main(["eval", str(done.run_dir), "--data", str(datasets["other"])]) == 2
    err = capsys.readouterr().err
    ours = sha256_file(text_data / "tokenizer.model")
    theirs = sha256_file(datasets["other"] / "tokenizer.model")
    assert "another tokenizer" in err and ours[:16] in err and theirs[:16] in err
    assert main(["eval", str(done.run_dir), "--data", str(datasets["same"])]) == 0  # other text, same tokenizer


def test_resume_refuses_another_tokenizer_even_when_other_data_is_allowed(text_data: Path,
                                                                          datasets: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    cut = run(tiny_config("gpt", tmp_path, "r", "--train.exit_at_step=2", data_path=text_data))
    meta = json.loads((cut.run_dir / "checkpoints" / "step_00000002" / "meta.json").read_text())
    assert meta["tokenizer_sha256"] == sha256_file(text_data / "tokenizer.model")
    with pytest.raises(ResumeRefused, match="another tokenizer"):
        run(tiny_config("gpt", tmp_path, "r", "--data.allow_fingerprint_change=true", data_path=datasets["other"]))
    done = run(tiny_config("gpt", tmp_path, "r", "--data.allow_fingerprint_change=true", data_path=datasets["same"]))
    assert done.step == 8


def test_export_records_the_tokenizer_and_init_from_checks_it(text_data: Path, datasets: dict[str, Path],
                                                              tmp_path: Path) -> None:
    done = run(tiny_config("gpt", tmp_path, "x", "--train.max_steps=2", data_path=text_data))
    hf = tmp_path / "hf"
    assert main(["export", str(done.run_dir), "--to", "hf", str(hf)]) == 0
    record = json.loads((hf / "megagrow_export.json").read_text())
    assert record["tokenizer_sha256"] == sha256_file(text_data / "tokenizer.model")
    with pytest.raises(ValueError, match=r"model.init_from='hf:.*' was trained with another tokenizer than data.path"):
        run(tiny_config("gpt", tmp_path, "y", "--train.max_steps=1", f"--model.init_from=hf:{hf}",
                        data_path=datasets["other"]))
    assert run(tiny_config("gpt", tmp_path, "z", "--train.max_steps=1", f"--model.init_from=hf:{hf}",
                           data_path=datasets["same"])).step == 1
    other_tok = tmp_path / "other.model"
    other_tok.write_bytes((datasets["other"] / "tokenizer.model").read_bytes())
    assert main(["export", str(done.run_dir), "--to", "hf", str(tmp_path / "hf2"), "--tokenizer",
                 str(other_tok)]) == 2  # exporting it with another tokenizer is refused too
