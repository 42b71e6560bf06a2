"""train.compile (regional torch.compile: one compiled graph per block shape) and the choice of DeepSpeed's
accelerator.

On CPU the compile tests swap inductor (C++ codegen, ~25 s per graph here) for a backend that runs dynamo's graph
as it is: dynamo still traces, guards and counts every graph; AOT autograd (what inductor's backward goes through)
is exercised with torch's "aot_eager"."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from megagrow.config import ConfigError, load_config
from megagrow.distributed import engine
from megagrow.distributed.compile_stats import compile_stats
from megagrow.distributed.engine import choose_deepspeed_accelerator, compile_in_place
from megagrow.models.masks import GrowthMasks
from tests.test_models import make_batch, model_for
from tests.test_plans import MULTILEVEL, STAGED
from tests.trainutil import records, run, tiny_config

GraphKey = tuple[str, tuple[int, ...], bool]  # (region: block or head, its input's shape [B, T, d], grad mode)


@pytest.fixture
def graphs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[GraphKey]]:
    """Compile with a backend that records each graph dynamo hands it and runs it as captured (what "eager" does),
    counting from a reset dynamo; yields the recorded graphs' keys."""
    seen: list[GraphKey] = []

    def recording_backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        x = next(t for t in example_inputs if isinstance(t, torch.Tensor) and t.dim() == 3)
        region = "block" if "scaled_dot_product_attention" in str(gm.graph) else "head"
        seen.append((region, tuple(x.shape), torch.is_grad_enabled()))
        return gm.forward

    monkeypatch.setattr(engine, "COMPILE_BACKEND", recording_backend)
    torch._dynamo.reset()
    counters.clear()
    yield seen
    torch._dynamo.reset()
    counters.clear()


def assert_counts(seen: list[GraphKey]) -> dict:
    """Dynamo's counters agree with the recorded graphs, nothing broke a graph, and no (shape, mode) compiled
    twice; returns :func:`compile_stats`."""
    stats = compile_stats()
    assert stats["graphs"] == stats["frames_ok"] == stats["frames"] == len(seen), (stats, seen)
    regions = len({region for region, _, _ in seen})  # code objects: Block.forward (and GPT's head_loss)
    assert stats["recompiles"] == len(seen) - regions  # every graph of a code object after its first
    assert stats["graph_breaks"] == 0 and stats["compile_s"] > 0
    assert len(set(seen)) == len(seen), f"a block shape compiled twice: {seen}"
    return stats


def test_compiled_model_matches_eager_and_keeps_names_across_layer_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "COMPILE_BACKEND", "aot_eager")  # dynamo + AOT autograd, no codegen
    torch._dynamo.reset()
    counters.clear()
    eager = model_for("gpt")
    compiled = model_for("gpt")
    names = [n for n, _ in compiled.named_parameters()]
    compile_in_place(compiled)
    assert [n for n, _ in compiled.named_parameters()] == names  # checkpoints and param groups unchanged
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert compiled._compiled_call_impl is None  # regional: the layer-map loop stays eager, each block compiled
    assert all(b._compiled_call_impl is not None for b in compiled.blocks)
    batch = make_batch(eager.cfg)
    for layer_map in ([0, 1, 2], [0, 0], [2, 1, 0, 1], [0, 1, 2]):  # sampled depths, weight sharing, a repeat
        eager.zero_grad()
        compiled.zero_grad()
        want = eager(batch, layer_map).loss
        got = compiled(batch, layer_map).loss
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        want.backward()
        got.backward()
        for (name, p), q in zip(compiled.named_parameters(), eager.parameters(), strict=True):
            if q.grad is None:  # a slot the layer map skips
                assert p.grad is None, name
            else:
                torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)
    assert all(p.grad is not None for p in compiled.parameters())
    # every layer map, and all three slots, ran one compiled graph: the blocks share it (+ GPT's compiled head)
    assert compile_stats()["graphs"] == 2 and compile_stats()["recompiles"] == 0
    torch._dynamo.reset()


@pytest.mark.parametrize("family", ["gpt", "bert"])
def test_compiled_blocks_under_checkpointing_and_growth_masks_match_eager(
    family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Activation checkpointing recomputes through the compiled block (same dropout masks: the RNG state is
    restored); growth masks are graph inputs, so a ramping mask value reuses the graph: plain and masked forward
    are one graph each, for every checkpointing setting and mask value."""
    monkeypatch.setattr(engine, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    counters.clear()
    eager = model_for(family, dropout=0.1)
    compiled = model_for(family, dropout=0.1)
    compile_in_place(compiled)
    cfg = eager.cfg
    batch = make_batch(cfg)
    mask_sets = [None] + [GrowthMasks(torch.full((cfg.hidden,), 0.5 + c), torch.full((cfg.n_heads,), c),
                                      torch.full((cfg.ffn_dim,), c), (1.0, c, 1.0)) for c in (0.0, 0.25, 0.5)]
    for checkpointing in (False, True):
        eager.activation_checkpointing = compiled.activation_checkpointing = checkpointing
        for masks in mask_sets:
            losses, grads = [], []
            for model in (eager, compiled):
                model.zero_grad()
                torch.manual_seed(1)
                loss = model(batch, [0, 1, 2, 1], masks).loss
                loss.backward()
                losses.append(loss)
                grads.append([p.grad for p in model.parameters()])
            torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-5)
            for g_compiled, g_eager in zip(grads[1], grads[0], strict=True):
                torch.testing.assert_close(g_compiled, g_eager, rtol=1e-5, atol=1e-6)
    stats = compile_stats()
    heads = 1 if family == "gpt" else 0  # GPT's head + loss is a compiled region too (one graph)
    assert stats["graphs"] == 2 + heads and stats["recompiles"] == 1 and stats["graph_breaks"] == 0, stats
    torch._dynamo.reset()


@pytest.mark.parametrize("plan", ["apollo", "stackbert"])
def test_depth_growth_run_compiles_each_block_shape_once(
    plan: str, graphs: list[GraphKey], tmp_path: Path, text_data: Path
) -> None:
    """A whole Apollo run (three stages, a sampled depth per micro-batch, two transitions to new models) and a
    StackBERT run with train.compile: one graph for training and one for evaluation, all blocks of the one shape
    sharing it, whatever the layer map."""
    family = "gpt" if plan == "apollo" else "bert"
    cfg = tiny_config(family, tmp_path, plan, *STAGED[plan], "--train.max_steps=20", "--train.compile=true",
                      data_path=text_data)
    recs = records(run(cfg).run_dir)
    depths = [r["depth"] for r in recs]
    assert len({r["phase"] for r in recs}) == 3
    assert len(set(depths)) > 2 if plan == "apollo" else depths == [1] * 6 + [2] * 6 + [4] * 8
    assert_counts(graphs)
    assert recs[-1]["compile_graphs"] == len(graphs) and recs[-1]["compile_s"] > 0  # the metrics carry the counts
    hidden = cfg.model.hidden
    assert {shape[-1] for _, shape, _ in graphs} == {hidden}
    regions = ["block", "head"] if family == "gpt" else ["block"]  # BERT's head (masked positions) stays eager
    assert sorted((region, grad) for region, _, grad in graphs) == [(r, g) for r in regions for g in (False, True)]


def test_multilevel_run_compiles_one_graph_per_block_shape(graphs: list[GraphKey], tmp_path: Path,
                                                           text_data: Path) -> None:
    """Width changes (full -> coalesced half width -> de-coalesced full): each block shape compiles once per mode,
    the de-coalesced model reuses the full-width graphs compiled before coalescing."""
    cfg = tiny_config("gpt", tmp_path, "ml", *MULTILEVEL, "--train.max_steps=20", "--train.compile=true",
                      data_path=text_data)  # evaluation every 4 steps: both widths evaluate
    recs = records(run(cfg).run_dir)
    hidden = cfg.model.hidden
    assert [r["hidden"] for r in recs] == [hidden] * 4 + [hidden // 2] * 8 + [hidden] * 8
    assert_counts(graphs)
    assert sorted((region, shape[-1], grad) for region, shape, grad in graphs) == [
        (region, d, grad) for region in ("block", "head") for d in (hidden // 2, hidden) for grad in (False, True)]


def test_compile_with_zero3_is_refused_naming_both_fields() -> None:
    with pytest.raises(ConfigError) as e:
        load_config("configs/gpt-tiny.yaml", ["--train.compile=true", "--distributed.zero_stage=3"])
    assert "train.compile" in str(e.value) and "zero_stage=3" in str(e.value)
    assert load_config("configs/gpt-tiny.yaml", ["--train.compile=true", "--distributed.zero_stage=2"]).train.compile


def test_deepspeed_accelerator_follows_torch_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # a DeepSpeed installed without a GPU records accelerator_name='cpu'; megagrow must pick cuda where torch sees a
    # GPU (found on an H200: every megagrow run there trained on the CPU accelerator and failed at its first broadcast)
    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    choose_deepspeed_accelerator()
    assert os.environ["DS_ACCELERATOR"] == "cuda"
    monkeypatch.delenv("DS_ACCELERATOR")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    choose_deepspeed_accelerator()
    assert os.environ["DS_ACCELERATOR"] == "cpu"
    monkeypatch.setenv("DS_ACCELERATOR", "xpu")  # the user's choice wins
    choose_deepspeed_accelerator()
    assert os.environ["DS_ACCELERATOR"] == "xpu"
