"""The GPU presets ``configs/gpu/*.yaml`` and the GPU benchmark's plumbing in ``benchmarks/throughput/run.py``.

Every preset loads and validates, leaves ``train.precision`` to ``auto``, compiles, chunks the LM loss (text models) and
has the shape and parameter count its name says, counted on the meta device (nothing allocated). The benchmark's GPU
sizes follow the presets, its ``megagrow-auto*`` variants leave the precision alone, and ``--merge`` joins the results
of several invocations (no training runs here: those are ``gpu-check.sh``'s, ``DRY_RUN=cpu`` on a CPU).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path

import pytest
import torch

from megagrow.config import config_tree, load_config
from megagrow.models import build_model

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "configs" / "gpu").glob("*.yaml"))


def preset(name: str):
    return load_config(ROOT / "configs" / "gpu" / f"{name}.yaml")


def test_the_presets_exist() -> None:
    assert {"gpt-base", "gpt-medium", "bert-base", "deit-base"} <= {p.stem for p in PRESETS}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads_validates_and_is_set_for_a_gpu(path: Path) -> None:
    cfg = load_config(path)  # validates: raises ConfigError naming every problem
    assert cfg.run.name == path.stem
    assert cfg.train.precision == "auto"
    assert config_tree(path)["train"].get("precision", "auto") == "auto"  # not pinned, in the file or an include
    assert cfg.train.compile is True
    assert cfg.distributed.zero_stage in (0, 1, 2)  # compile needs ZeRO 0-2
    assert cfg.optim.schedule in ("wsd", "cosine")
    assert "${MEGAGROW_CACHE}" in cfg.data.path  # a placeholder the user overrides
    assert load_config(path, ["--data.path=/data/x"]).data.path == "/data/x"
    if cfg.model.family in ("gpt", "bert"):
        assert cfg.train.loss_chunk > 0
        assert cfg.data.seq_len == cfg.model.max_seq_len
    if cfg.model.family == "gpt":
        assert cfg.model.dropout == 0 and cfg.model.attn_dropout == 0
        assert cfg.data.seq_len == 1024
        assert cfg.global_batch_size(1) * cfg.data.seq_len == 524_288  # 0.5M tokens per step


@pytest.mark.parametrize(
    ("name", "vocab", "expected"),
    [
        ("gpt-base", 50257, 124_439_808),  # HF gpt2
        ("gpt-base", 32768, 111_008_256),  # the 32k BPE of the GPU benchmark
        ("gpt-medium", 50257, 354_823_168),  # HF gpt2-medium
        ("gpt-medium", 32768, 336_914_432),
        ("bert-base", 30522, 109_514_298),  # HF BertForMaskedLM bert-base-uncased (no pooler)
        ("deit-base", 0, 87_338_192),  # timm deit_base_distilled_patch16_224
    ],
)
def test_preset_parameter_count(name: str, vocab: int, expected: int) -> None:
    model_cfg = dataclasses.replace(preset(name).model, vocab_size=vocab)
    with torch.device("meta"):
        model = build_model(model_cfg)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_preset_shapes() -> None:
    m = preset("gpt-medium").model
    assert (m.family, m.size, m.n_layers, m.hidden, m.n_heads, m.ffn_dim, m.max_seq_len) == (
        "gpt", None, 24, 1024, 16, 4096, 1024)
    d = preset("deit-base")
    assert (d.model.image_size, d.model.patch_size, d.model.num_classes, d.data.kind) == (224, 16, 1000, "images")
    b = preset("bert-base")
    assert (b.model.family, b.model.n_layers, b.model.hidden, b.data.seq_len) == ("bert", 12, 768, 512)


# ------------------------------------------------------------------------------------ benchmarks/throughput/run.py


@pytest.fixture(scope="module")
def bench():
    from benchmarks.throughput import run

    return run


def test_benchmark_gpu_sizes_follow_the_presets(bench) -> None:
    base, medium = preset("gpt-base"), preset("gpt-medium")
    fill = load_config(bench.BASE, bench.size_overrides("gpt-base-fill", None, "fp32"))
    assert (fill.model.n_layers, fill.model.hidden, fill.data.seq_len) == (12, 768, 1024)
    assert fill.data.micro_batch_size == base.data.micro_batch_size
    med = load_config(bench.BASE, bench.size_overrides("gpt-medium", None, "fp32"))
    for key in ("n_layers", "hidden", "n_heads", "ffn_dim", "max_seq_len"):
        assert getattr(med.model, key) == getattr(medium.model, key), key
    assert med.data.micro_batch_size == medium.data.micro_batch_size


def test_benchmark_auto_variants_leave_precision_alone(bench) -> None:
    assert not any(a.startswith("--train.precision") for a in bench.size_overrides("micro", None, None))
    assert "--train.precision=bf16" in bench.size_overrides("micro", None, "bf16")
    assert load_config(bench.BASE, bench.size_overrides("micro", None, None)).train.precision == "auto"
    assert bench.variant_parts("megagrow-auto-compile-chunk") == {"auto", "compile", "chunk"}
    assert "autocast" not in bench.variant_parts("megagrow-auto")
    for v in bench.VARIANTS:
        assert v.startswith(("plain", "megagrow-"))


def _part(variants: dict, peak: float = 1e12) -> dict:
    size = {"note": "", "tokens_per_step": 100.0, "variants": variants}
    return {"command": "run.py ...", "machine": {"gpu": "test"}, "precision": "bf16",
            "matmul_peak": {"flops_per_s": peak}, "datasheet_peak_flops_per_s": 2 * peak, "sizes": {"gpt-base": size}}


def test_benchmark_merge(bench, tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    a.write_text(json.dumps(_part({"plain": {"tokens_per_s": [1000.0], "flops_per_step": 10**9, "t": [[10.0, 20.0]]}})))
    b.write_text(json.dumps(_part({
        "megagrow-auto": {"tokens_per_s": [900.0], "flops_per_step": 10**9, "tokens_per_step": 100.0,
                          "compile_stats": [{"compile_graphs": 2}], "resolved_precision": "bf16-autocast",
                          "t": [[30.0, 40.0]]},
        "megagrow-auto-compile-pb": {"tokens_per_s": [], "skipped": "no train.phase_batching"},
        "plain": {"tokens_per_s": [1100.0], "flops_per_step": 10**9}})))
    csv = tmp_path / "mem.csv"

    def stamp(t: float) -> str:
        return datetime.datetime.fromtimestamp(t).strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]
    csv.write_text("".join(f"{stamp(t)}, {mib}, 50\n" for t, mib in ((15, 5000), (19, 7000), (35, 9000), (50, 1))))
    out = tmp_path / "merged.json"
    merged = bench.merge_results([a, b, tmp_path / "missing.json"], out, str(csv))
    assert json.loads(out.read_text()) == merged and out.with_suffix(".png").is_file()
    runs = merged["sizes"]["gpt-base"]["variants"]
    assert runs["plain"]["tokens_per_s"] == [1000.0, 1100.0]
    assert runs["plain"]["median_tokens_per_s"] == 1050.0
    assert runs["megagrow-auto"]["ratio_to_plain"] == pytest.approx(900 / 1050)
    assert runs["megagrow-auto"]["mfu"] == pytest.approx(900 / 100 * 1e9 / 2e12)
    assert runs["megagrow-auto"]["compile_stats"] == [{"compile_graphs": 2}]
    assert runs["plain"]["gpu_memory_used_peak_mib"] == 7000
    assert runs["megagrow-auto"]["gpu_memory_used_peak_mib"] == 9000
    assert runs["megagrow-auto-compile-pb"]["skipped"]
    assert "skipped" in bench.table(merged)
