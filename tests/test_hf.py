"""Hugging Face interchange: export (logits equal to transformers'), import (exact round trip, every mismatch
named), ``model.init_from``, and the export/eval/sample commands on checkpoints of short tiny trainings."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from megagrow.checkpointing.model import open_checkpoint
from megagrow.checkpointing.store import latest_checkpoint, load_checkpoint_params
from megagrow.cli import main as cli_main
from megagrow.interchange.hf import HFConversionError, from_hf, to_hf
from megagrow.interchange.hf_io import read_hf_dir, write_hf_dir
from megagrow.models import MegagrowModel, ModelConfig, build_model
from tests.trainutil import records, run, tiny_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing comes from a model hub: every model is built from a config

RTOL = 1e-4
KW: dict[str, dict] = {
    "gpt": {"family": "gpt", "vocab_size": 61, "max_seq_len": 16},
    "bert": {"family": "bert", "vocab_size": 61, "max_seq_len": 16, "ln_eps": 1e-12},
    "deit": {"family": "deit", "image_size": 16, "patch_size": 4, "num_classes": 5, "ln_eps": 1e-6},
    "vit": {"family": "deit", "image_size": 16, "patch_size": 4, "num_classes": 5, "distill_token": False},
}


def _model(kind: str, n_layers: int = 2, seed: int = 0) -> MegagrowModel:
    """A tiny random model with every parameter (LayerNorms, biases, tokens) perturbed away from its init."""
    torch.manual_seed(seed)
    cfg = ModelConfig(n_layers=n_layers, hidden=32, n_heads=4, ffn=48, **KW[kind])
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def _batch(family: str, cfg: ModelConfig, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if family == "deit":
        return {"images": torch.randn(3, cfg.in_chans, cfg.image_size, cfg.image_size, generator=g),
                "labels": torch.zeros(3, dtype=torch.long)}
    ids = torch.randint(0, cfg.vocab_size, (3, cfg.max_seq_len), generator=g)
    if family == "gpt":
        return {"input_ids": ids, "labels": ids}
    labels = torch.full_like(ids, -100)
    labels[:, 1::3] = ids[:, 1::3]
    mask = torch.ones_like(ids)
    mask[2, -4:] = 0  # padding: BERT's attention mask must mean the same in both
    types = (torch.arange(ids.shape[1]) >= 8).long().expand_as(ids)
    return {"input_ids": ids, "labels": labels, "token_type_ids": types, "attention_mask": mask}


def _hf_logits(family: str, hf: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The Hugging Face model's logits in the layout megagrow's forward returns them."""
    with torch.no_grad():
        if family == "deit":
            return hf(pixel_values=batch["images"]).logits
        if family == "gpt":
            return hf(input_ids=batch["input_ids"]).logits
        out = hf(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                 attention_mask=batch["attention_mask"]).logits
        return out[batch["labels"] != -100]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _transformers():
    """transformers is a test-only dependency: the tests that compare against it skip without it."""
    return pytest.importorskip("transformers")


def _load_hf(path: Path) -> torch.nn.Module:
    arch = json.loads((path / "config.json").read_text())["architectures"][0]
    return getattr(_transformers(), arch).from_pretrained(str(path)).eval()


def _assert_same_logits(model: MegagrowModel, layer_map, out_dir: Path, batch: dict | None = None) -> None:
    family = model.cfg.family
    batch = batch or _batch(family, model.cfg)
    with torch.no_grad():
        ours = model(batch, layer_map).logits
    hf = _load_hf(out_dir)
    theirs = _hf_logits(family, hf, batch)
    assert ours.shape == theirs.shape and float(ours.abs().max()) > 0.1
    assert _rel(theirs, ours) <= RTOL, _rel(theirs, ours)


# ---------------------------------------------------------------------------------------------- pure conversion


@pytest.mark.parametrize("kind", ["gpt", "bert", "deit", "vit"])
@pytest.mark.parametrize("layer_map", [[0, 1], [0, 0, 1]])
def test_export_matches_transformers_logits(tmp_path: Path, kind: str, layer_map: list[int]) -> None:
    model = _model(kind)
    config, tensors = to_hf(dict(model.named_parameters()), model.cfg, layer_map)
    out = write_hf_dir(tmp_path / "hf", config, tensors)
    hf = _load_hf(out)
    layers = hf.config.num_hidden_layers if hasattr(hf.config, "num_hidden_layers") else hf.config.n_layer
    assert layers == len(layer_map)
    expected = {"gpt": "GPT2LMHeadModel", "bert": "BertForMaskedLM", "deit": "DeiTForImageClassificationWithTeacher",
                "vit": "ViTForImageClassification"}[kind]
    assert type(hf).__name__ == expected
    _assert_same_logits(model, layer_map, out)


def test_layer_map_copies_slots_into_layers() -> None:
    model = _model("gpt")
    _, t = to_hf(dict(model.named_parameters()), model.cfg, [0, 0, 1])
    w = model.blocks[0].attn.qkv.weight
    assert torch.equal(t["transformer.h.0.attn.c_attn.weight"], w.T) and torch.equal(
        t["transformer.h.1.attn.c_attn.weight"], w.T)
    assert torch.equal(t["transformer.h.2.mlp.c_fc.weight"], model.blocks[1].mlp.fc_in.weight.T)
    assert t["transformer.h.0.ln_1.weight"].data_ptr() != t["transformer.h.1.ln_1.weight"].data_ptr()


@pytest.mark.parametrize("kind", ["gpt", "bert", "deit", "vit"])
def test_round_trip_is_bit_identical(tmp_path: Path, kind: str) -> None:
    """megagrow -> HF files -> megagrow, and a transformers-saved model -> megagrow -> HF: the same bits."""
    model = _model(kind, n_layers=3)
    params = {n: p.detach() for n, p in model.named_parameters()}
    config, tensors = to_hf(params, model.cfg)
    read_config, read_tensors = read_hf_dir(write_hf_dir(tmp_path / "a", config, tensors))
    back = from_hf(read_tensors, read_config, model.cfg)
    assert sorted(back) == sorted(params)
    for name, t in params.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t), name
    hf = _load_hf(tmp_path / "a")  # transformers' own save (tied copies dropped, its metadata) imports too
    hf.save_pretrained(str(tmp_path / "b"))
    hf_config, hf_tensors = read_hf_dir(tmp_path / "b")
    again = from_hf(hf_tensors, hf_config, model.cfg)
    _, out = to_hf(again, model.cfg)
    for name, t in hf_tensors.items():
        assert torch.equal(out[name], t), name


def test_import_lists_every_mismatch(tmp_path: Path) -> None:
    model = _model("gpt", n_layers=2)
    config, tensors = to_hf(dict(model.named_parameters()), model.cfg)
    del tensors["transformer.h.1.mlp.c_fc.bias"]
    tensors["transformer.h.0.extra.weight"] = torch.zeros(2)
    tensors["transformer.wpe.weight"] = torch.zeros(8, 32)
    config["n_positions"] = 8
    expect = replace(model.cfg, n_layers=3)
    with pytest.raises(HFConversionError) as e:
        from_hf(tensors, config, expect, source="DIR")
    msg = str(e.value)
    for part in ("n_layer=2", "model.n_layers=3", "n_positions=8", "model.max_seq_len=16",
                 "missing tensor transformer.h.1.mlp.c_fc.bias", "missing tensor transformer.h.2.ln_1.weight",
                 "unexpected tensor transformer.h.0.extra.weight", "tensor transformer.wpe.weight: shape [8, 32], "
                 "expected [16, 32]"):
        assert part in msg, (part, msg)
    assert len(e.value.problems) == 2 + 1 + 12 + 1 + 1  # config, c_fc.bias, all 12 of layer 2, extra, wpe
    assert "... and 10 more missing tensors" in msg and len(msg.splitlines()) == 1 + 2 + 3 + 1 + 1 + 1  # not 17


def test_a_large_shape_mismatch_is_summarized() -> None:
    """A 12-layer checkpoint into a 1-layer start model printed 134 lines; now a few per kind and counts."""
    big = _model("gpt", n_layers=12)
    config, tensors = to_hf(dict(big.named_parameters()), big.cfg)
    with pytest.raises(HFConversionError) as e:
        from_hf(tensors, config, replace(big.cfg, n_layers=1), source="DIR")
    lines = str(e.value).splitlines()
    assert len(lines) <= 10 and len(e.value.problems) > 100, lines
    assert any(ln.startswith("  - ... and ") and ln.endswith("more unexpected tensors") for ln in lines)


def test_import_refuses_what_megagrow_cannot_compute(tmp_path: Path) -> None:
    model = _model("bert")
    config, tensors = to_hf(dict(model.named_parameters()), model.cfg)
    with pytest.raises(HFConversionError, match=r"hidden_act='relu'"):
        from_hf(tensors, {**config, "hidden_act": "relu"}, model.cfg)
    with pytest.raises(HFConversionError, match=r"model_type='bert' is a bert model, but the run's model.family='gpt'"):
        from_hf(tensors, config, _model("gpt").cfg)
    with pytest.raises(HFConversionError, match=r"model_type='llama': expected one of"):
        from_hf(tensors, {**config, "model_type": "llama"}, model.cfg)
    tied = {**tensors, "cls.predictions.decoder.bias": tensors["cls.predictions.bias"] + 1}
    with pytest.raises(HFConversionError, match="differs from cls.predictions.bias"):
        from_hf(tied, config, model.cfg)
    (tmp_path / "pkl").mkdir()
    (tmp_path / "pkl" / "config.json").write_text(json.dumps(config))
    (tmp_path / "pkl" / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ValueError, match="only pickled weights .*never unpickles"):
        read_hf_dir(tmp_path / "pkl")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        read_hf_dir(tmp_path)


def test_bert_variants_without_a_hugging_face_equivalent() -> None:
    """BertForMaskedLM is post-LN with no attention bias: a ``model.bert_pre_ln`` or ``model.attn_local_bias`` BERT
    is refused both ways, by name, not mis-converted."""
    post = _model("bert")
    config, tensors = to_hf(dict(post.named_parameters()), post.cfg)
    pre_cfg = replace(post.cfg, bert_pre_ln=True)
    pre = build_model(pre_cfg)
    with pytest.raises(HFConversionError, match="model.bert_pre_ln=true: Hugging Face's BertForMaskedLM is post-LN"):
        to_hf(dict(pre.named_parameters()), pre_cfg)
    with pytest.raises(HFConversionError, match="model.bert_pre_ln=true"):
        from_hf(tensors, config, pre_cfg)
    local_cfg = replace(post.cfg, attn_local_bias=0.5)
    with pytest.raises(HFConversionError, match="model.attn_local_bias=0.5: Hugging Face's BertForMaskedLM has no"):
        to_hf(dict(post.named_parameters()), local_cfg)
    with pytest.raises(HFConversionError, match="model.attn_local_bias=0.5"):
        from_hf(tensors, config, local_cfg)


def test_write_is_atomic_and_refuses_to_overwrite(tmp_path: Path) -> None:
    model = _model("vit")
    config, tensors = to_hf(dict(model.named_parameters()), model.cfg)
    out = write_hf_dir(tmp_path / "x", config, tensors)
    with pytest.raises(FileExistsError, match="already exists"):
        write_hf_dir(out, config, tensors)
    bad = {**tensors, "broken": object()}
    with pytest.raises(Exception):  # noqa: B017  (whatever safetensors raises: nothing may be left behind)
        write_hf_dir(tmp_path / "y", config, bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]
    write_hf_dir(out, config, tensors, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


# ---------------------------------------------------------------------------------------------- checkpoints


def _train(tmp_path: Path, family: str, name: str, *extra: str, data: Path | None = None):
    cfg = tiny_config(family, tmp_path, name, "--model.hidden=32", "--train.max_steps=4", "--train.eval_every=2",
                      "--checkpoint.every=2", "--checkpoint.keep_last=5", *extra, data_path=data)
    return run(cfg)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, text_data: Path) -> dict[str, Path]:
    """Tiny 4-step runs (checkpoints at steps 2 and 4): gpt and bert from scratch, gpt with Apollo (1 live slot
    until step 3, then 3), deit from scratch."""
    root = tmp_path_factory.mktemp("hf_runs")
    out = {"gpt": _train(root, "gpt", "gpt", data=text_data).run_dir,
           "bert": _train(root, "bert", "bert", data=text_data).run_dir,
           "deit": _train(root, "deit", "deit").run_dir,
           "apollo": _train(root, "gpt", "apollo", "--growth.plan=apollo", "--growth.stages=1,3",
                            "--growth.boundaries=3", "--growth.boundary_unit=steps", data=text_data).run_dir}
    return out


@pytest.mark.parametrize("name", ["gpt", "bert", "deit"])
def test_cli_export_of_a_checkpoint(runs: dict[str, Path], tmp_path: Path, name: str) -> None:
    out = tmp_path / "hf"
    assert cli_main(["export", str(runs[name]), "--to", "hf", str(out)]) == 0
    cm = open_checkpoint(runs[name])
    assert cm.step == 4
    _assert_same_logits(cm.build(), cm.layer_map, out)
    meta = json.loads((out / "megagrow_export.json").read_text())
    assert meta["step"] == 4 and meta["layer_map"] == [0, 1, 2]
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert len(set(modes.values())) == 1 and modes["model.safetensors"] & 0o044, modes  # not 0600 among 0644
    if name == "deit":
        assert not (out / "tokenizer.model").exists()
        return
    tok_src = cm.config.data.path
    assert (out / "tokenizer.model").read_bytes() == (Path(tok_src) / "tokenizer.model").read_bytes()
    tok = _transformers().AutoTokenizer.from_pretrained(str(out), use_fast=False)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    text = "The king watches the northern sea before the night falls."
    ids = tok(text)["input_ids"]
    assert ids == ([2, *sp.encode(text), 3] if name == "bert" else sp.encode(text))


def test_export_mid_apollo_runs_the_target_depth(runs: dict[str, Path], tmp_path: Path) -> None:
    """Step 2 of Apollo 1 -> 3: one live slot, evaluated through the map [0, 0, 0]: three Hugging Face layers."""
    ckpt = runs["apollo"] / "checkpoints" / "step_00000002"
    cm = open_checkpoint(ckpt)
    assert cm.model_cfg.n_layers == 1 and cm.layer_map == (0, 0, 0) and cm.phase == "apollo-N1"
    out = tmp_path / "hf"
    assert cli_main(["export", str(ckpt), "--to", "hf", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["n_layer"] == 3
    _assert_same_logits(cm.build(), cm.layer_map, out)
    final = open_checkpoint(runs["apollo"])
    assert final.model_cfg.n_layers == 3 and final.layer_map == (0, 1, 2)


def test_export_of_a_coarse_multilevel_phase_and_msg_ramp(text_data: Path, tmp_path: Path) -> None:
    """Multi-level's coarse phase exports the coarse model; inside MSG's mask ramp export is refused (eval works)."""
    small = ("--model.n_layers=2", "--model.ffn=64", "--growth.boundary_unit=steps")
    ml = _train(tmp_path, "gpt", "ml", *small, "--growth.plan=multilevel", "--growth.boundaries=1,3",
                data=text_data)
    coarse = ml.run_dir / "checkpoints" / "step_00000002"
    cm = open_checkpoint(coarse)
    assert (cm.model_cfg.n_layers, cm.model_cfg.hidden, cm.model_cfg.n_heads) == (1, 16, 1)
    out = tmp_path / "ml_hf"
    assert cli_main(["export", str(coarse), "--to", "hf", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["n_embd"] == 16
    _assert_same_logits(cm.build(), cm.layer_map, out)
    msg = _train(tmp_path, "gpt", "msg", *small, "--growth.plan=msg", "--growth.boundaries=2",
                 "--growth.msg.ramp_steps=4", data=text_data)
    assert open_checkpoint(msg.run_dir).masks is not None
    with pytest.raises(ValueError, match=r"inside the msg mask ramp \(mask value c=0.25"):
        from megagrow.interchange.export import export_hf

        export_hf(msg.run_dir, tmp_path / "msg_hf")
    assert not (tmp_path / "msg_hf").exists()
    r = json.loads(_cli_json(["eval", str(msg.run_dir), "--json"]))
    logged = [x["val_loss"] for x in records(msg.run_dir) if x["step"] == 4][0]
    assert abs(r["loss"] - logged) <= 1e-4 * abs(logged)


def _cli_json(argv: list[str]) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli_main(argv) == 0
    return buf.getvalue()


def test_export_bad_input(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["export", str(tmp_path / "nope"), "--to", "hf", str(tmp_path / "o")]) == 2
    assert "no such checkpoint or run directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(["export", str(tmp_path / "empty"), "--to", "hf", str(tmp_path / "o")]) == 2
    assert "not a checkpoint (no meta.json)" in capsys.readouterr().err
    (tmp_path / "o").mkdir()
    assert cli_main(["export", str(runs["deit"]), "--to", "hf", str(tmp_path / "o")]) == 2
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["export", str(runs["deit"]), "--to", "onnx", str(tmp_path / "p")])
    assert cli_main(["export", str(runs["deit"]), "--to", "hf", str(tmp_path / "p"), "--optim.lr=1"]) == 2


# ---------------------------------------------------------------------------------------------- eval and sample


@pytest.mark.parametrize(("name", "step"), [("gpt", 4), ("bert", 4), ("deit", 2), ("apollo", 2)])
def test_eval_reproduces_the_logged_val_loss(runs: dict[str, Path], name: str, step: int) -> None:
    ckpt = runs[name] / "checkpoints" / f"step_{step:08d}"
    r = json.loads(_cli_json(["eval", str(ckpt), "--json"]))
    logged = [x["val_loss"] for x in records(runs[name]) if x["step"] == step][0]
    assert r["step"] == step and r["samples"] == 32
    assert abs(r["loss"] - logged) <= 1e-4 * abs(logged), (r["loss"], logged)
    if name == "deit":
        assert r["perplexity"] is None and 0.0 <= r["accuracy"] <= 1.0
    else:
        assert r["accuracy"] is None and r["perplexity"] == pytest.approx(float(torch.tensor(r["loss"]).exp()))


def test_eval_other_data_and_sample_count(runs: dict[str, Path], text_data: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    a = json.loads(_cli_json(["eval", str(runs["gpt"]), "--data", str(text_data), "--samples", "8", "--json"]))
    b = json.loads(_cli_json(["eval", str(runs["gpt"]), "--samples", "16", "--json"]))
    assert a["samples"] == 8 and b["samples"] == 16 and a["loss"] != b["loss"]
    assert cli_main(["eval", str(runs["gpt"]), "--samples", "0"]) == 2
    assert "--samples 0: must be >= 1" in capsys.readouterr().err


def _greedy(model: MegagrowModel, layer_map, ids: list[int], n: int) -> list[int]:
    out = list(ids)
    for _ in range(n):
        x = torch.tensor([out])
        with torch.no_grad():
            out.append(int(model({"input_ids": x, "labels": x}, layer_map).logits[0, -1].argmax()))
    return out[len(ids):]


def test_sample_is_seeded_greedy_at_top_k_1_and_bounded(runs: dict[str, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from megagrow.use import sample_checkpoint

    ckpt = runs["gpt"]
    a = sample_checkpoint(ckpt, "The king", max_new_tokens=12, seed=3, stop_at_eos=False)
    b = sample_checkpoint(ckpt, "The king", max_new_tokens=12, seed=3, stop_at_eos=False)
    c = sample_checkpoint(ckpt, "The king", max_new_tokens=12, seed=4, stop_at_eos=False)
    assert a == b and len(a.new_ids) == 12 and a.new_ids != c.new_ids
    g = sample_checkpoint(ckpt, "The king", max_new_tokens=7, top_k=1, seed=9, stop_at_eos=False)
    t0 = sample_checkpoint(ckpt, "The king", max_new_tokens=7, temperature=0, stop_at_eos=False)
    cm = open_checkpoint(ckpt)
    assert g.new_ids == t0.new_ids == _greedy(cm.build(), cm.layer_map, [5, *g.prompt_ids], 7)
    assert g.text.startswith("The king")
    assert cli_main(["sample", str(ckpt), "--prompt", "The king", "--max-new-tokens", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("The king")
    assert cli_main(["sample", str(runs["bert"]), "--prompt", "x"]) == 2
    assert "causal language model (family gpt); this checkpoint is bert, a masked language model" in \
        capsys.readouterr().err
    assert cli_main(["sample", str(runs["deit"]), "--prompt", "x"]) == 2
    assert "image classifier" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- model.init_from


def _export_random(tmp_path: Path, cfg: ModelConfig, seed: int = 5) -> Path:
    torch.manual_seed(seed)
    model = build_model(cfg)
    config, tensors = to_hf(dict(model.named_parameters()), cfg)
    return write_hf_dir(tmp_path / f"init_{cfg.hidden}_{cfg.n_layers}", config, tensors)


def _close(params: dict[str, torch.Tensor], hf_dir: Path, cfg: ModelConfig) -> None:
    hf_config, tensors = read_hf_dir(hf_dir)
    start = from_hf(tensors, hf_config, cfg)
    assert sorted(start) == sorted(params)
    for n, t in start.items():  # one step at lr 1e-9 moves nothing visibly; a random init differs by ~0.02
        assert torch.allclose(params[n], t, atol=1e-6, rtol=0), n


def test_init_from_hf_starts_scratch_and_growth_runs(text_data: Path, tmp_path: Path) -> None:
    """scratch: the run's weights after one step at a negligible LR are the HF model's; bert2bert: the plan's
    *small* start model is what init_from must match (the target is refused, listing every problem); a resume
    ignores init_from."""
    lr = ("--optim.lr=1e-9", "--optim.weight_decay=0", "--checkpoint.every=1")
    export = tmp_path / "exported"
    src = _train(tmp_path, "gpt", "src", data=text_data)
    assert cli_main(["export", str(src.run_dir), "--to", "hf", str(export)]) == 0
    a = _train(tmp_path, "gpt", "a", *lr, f"--model.init_from=hf:{export}", "--train.exit_at_step=1",
               data=text_data)
    params, meta = load_checkpoint_params(latest_checkpoint(a.run_dir / "checkpoints"))
    _close(params, export, ModelConfig(**meta["model"]))
    resumed = _train(tmp_path, "gpt", "a", *lr, "--model.init_from=hf:/nonexistent", data=text_data)
    assert resumed.step == 4  # the checkpoint took precedence: the missing directory was never read

    small = ("--model.n_layers=2", "--model.ffn=64", "--growth.plan=bert2bert", "--growth.boundaries=2",
             "--growth.boundary_unit=steps")
    target = tiny_config("bert", tmp_path, "t", "--model.hidden=32", *small, data_path=text_data).model
    target = replace(target, vocab_size=400)
    start = replace(target, n_layers=1, hidden=16, n_heads=1, ffn=32)
    good = _export_random(tmp_path, start)
    b = _train(tmp_path, "bert", "b", *small, *lr, f"--model.init_from=hf:{good}", data=text_data)
    params, meta = load_checkpoint_params(b.run_dir / "checkpoints" / "step_00000001")
    assert meta["model"]["hidden"] == 16
    _close(params, good, start)
    wrong = _export_random(tmp_path, target)
    with pytest.raises(HFConversionError) as e:
        _train(tmp_path, "bert", "c", *small, f"--model.init_from=hf:{wrong}", data=text_data)
    msg = str(e.value)  # every config problem, a few tensors of each kind and counts (all in e.value.problems)
    for part in ("model.init_from=", "hidden_size=32", "model.hidden=16", "num_hidden_layers=2", "model.n_layers=1",
                 "unexpected tensor bert.encoder.layer.1.", "more unexpected tensors",
                 "tensor bert.embeddings.word_embeddings.weight: shape [400, 32], expected [400, 16]"):
        assert part in msg, (part, msg)
    assert any(p.startswith("unexpected tensor bert.encoder.layer.1.output.dense.bias") for p in e.value.problems)


def test_init_from_is_validated_and_neutral_on_resume() -> None:
    from megagrow.checkpointing.resume import Kind, rule_for
    from megagrow.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"model.init_from='runs/x': expected hf:DIR"):
        load_config(None, ["--model.init_from=runs/x"])
    assert load_config(None, ["--model.init_from=hf:runs/x"]).model.init_from == "hf:runs/x"
    assert rule_for("model.init_from").kind is Kind.NEUTRAL


def test_deit_export_names_the_image_classes(tmp_path: Path) -> None:
    import numpy as np

    from data_prep.images.arrays import read_npz
    from data_prep.images.shards import ImageBuildSettings, build_images
    from megagrow.config import load_config
    from megagrow.interchange.export import class_names

    labels = np.arange(16) % 4
    images = np.random.default_rng(0).integers(0, 255, size=(16, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=labels, class_names=np.array(["a", "b", "c", "d"]))
    build_images(tmp_path / "shards", read_npz(tmp_path / "d.npz"), settings=ImageBuildSettings(val_fraction=0.25))
    cfg = load_config(None, ["--model.size=deit-tiny", "--model.num_classes=4", "--data.kind=images",
                             f"--data.path={tmp_path / 'shards'}"])
    assert class_names(cfg) == ["a", "b", "c", "d"]
    model = _model("vit")
    config, _ = to_hf(dict(model.named_parameters()), model.cfg, labels=list("vwxyz"))
    assert config["id2label"] == {"0": "v", "1": "w", "2": "x", "3": "y", "4": "z"}
    cfg.data.path = str(tmp_path / "moved")
    assert class_names(cfg) is None
