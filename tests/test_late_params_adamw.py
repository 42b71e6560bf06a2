"""Parameters that become live late (a growth operator gave them zero AdamW moments) start with their own
step count 0, exactly like a parameter added to a fresh torch AdamW — under every ZeRO stage, through
checkpoints, and in the growth operators' output.

The engine tests run one process on CPU (gloo), like the rest of the suite: phase 1 trains ``a`` alone in
plain torch AdamW for ``K`` steps; then ``b`` joins. The reference adds ``b`` to the same torch optimizer
(``add_param_group``: its own step count starts at 0); megagrow builds a ``FullState`` (``a``'s state, ``b``
with zero moments and step 0), builds an engine, scatters the state and steps it (with a checkpoint round
trip and a second engine half-way). Both must give the same weights, moments and step counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from megagrow.checkpointing.store import checkpoint_steps, load_checkpoint, save_checkpoint
from megagrow.config import Config, load_config
from megagrow.distributed.engine import build_engine, destroy_engine, init_distributed, param_groups
from megagrow.distributed.full_state import broadcast_param_steps, gather_full_state, scatter_full_state
from megagrow.growth.ops import bert2bert, coalesce_depth, decoalesce_depth, expand_depth, interpolate, stack_depth
from megagrow.growth.ops.msg import msg_grow
from megagrow.models import ModelConfig, build_model
from megagrow.models.dims import Dims
from megagrow.state import FullState, split_steps

K = 2000  # phase-1 steps of ``a``: large enough that a zero moment bias-corrected with K is ~3x a fresh update
M = 3  # steps after ``b`` joins, on the first engine
M2 = 2  # further steps on a second engine built from a checkpoint
LR, WD = 1e-3, 0.01
LATE = ("b", "b_bias")


class Late(nn.Module):
    """``a``/``a_bias`` live from the start; ``b``/``b_bias`` join late (used only once ``use_b`` is set)."""

    def __init__(self, use_b: bool = True) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Parameter(torch.randn(4, 4, generator=g))
        self.a_bias = nn.Parameter(torch.randn(4, generator=g))
        self.b = nn.Parameter(0.5 * torch.randn(4, 4, generator=g))
        self.b_bias = nn.Parameter(0.5 * torch.randn(4, generator=g))
        self.target = torch.randn(8, 4, generator=g)
        self.use_b = use_b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.a.dtype)  # bf16 engines cast the module
        y = x @ self.a + self.a_bias
        if self.use_b:
            y = y + torch.tanh(x @ self.b + self.b_bias)
        return ((y.float() - self.target) ** 2).mean()


def batch(step: int) -> torch.Tensor:
    return torch.randn(8, 4, generator=torch.Generator().manual_seed(1000 + step))


def config(zero_stage: int, precision: str = "fp32") -> Config:
    return load_config(None, ["--model.size=gpt-tiny", "--model.n_layers=1", "--model.vocab_size=64",
                              f"--train.precision={precision}",
                              "--data.micro_batch_size=8", f"--distributed.zero_stage={zero_stage}",
                              f"--optim.lr={LR}", f"--optim.weight_decay={WD}", "--optim.grad_clip=0",
                              "--optim.beta1=0.9", "--optim.beta2=0.999"])  # the Apollo release's betas


def torch_groups(model: Late, names: tuple[str, ...]) -> list[dict]:
    params = dict(model.named_parameters())
    return [{"params": [params[n] for n in names if params[n].ndim >= 2], "weight_decay": WD},
            {"params": [params[n] for n in names if params[n].ndim < 2], "weight_decay": 0.0}]


def reference(fused: bool) -> dict:
    """Plain torch: AdamW over ``a`` for K steps, then ``b`` added to the optimizer (fresh, step 0) and both
    stepped M + M2 times. Returns the phase-1 state, b's first update and the final state."""
    model = Late(use_b=False)
    cfg = config(0).optim
    opt = torch.optim.AdamW(torch_groups(model, ("a", "a_bias")), lr=LR, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                            fused=fused)
    for step in range(K):
        opt.zero_grad()
        model(batch(step)).backward()
        opt.step()
    params = dict(model.named_parameters())
    phase1 = {n: {k: v.detach().clone() for k, v in opt.state[params[n]].items()} for n in ("a", "a_bias")}
    phase1_params = {n: p.detach().clone() for n, p in params.items()}
    model.use_b = True
    for group in torch_groups(model, LATE):
        opt.add_param_group(group)
    b_before, first_update = params["b"].detach().clone(), None
    for step in range(K, K + M + M2):
        opt.zero_grad()
        model(batch(step)).backward()
        opt.step()
        if first_update is None:
            first_update = params["b"].detach() - b_before
    final = {n: p.detach().clone() for n, p in params.items()}
    moments = {n: {k: opt.state[p][k].clone() for k in ("exp_avg", "exp_avg_sq")} for n, p in params.items()}
    steps = {n: int(opt.state[p]["step"]) for n, p in params.items()}
    return {"phase1": phase1, "phase1_params": phase1_params, "first_update": first_update, "final": final,
            "moments": moments, "steps": steps}


def joined_state(ref: dict, late_step: int | None = 0) -> FullState:
    """The FullState a growth operator hands over when ``b`` joins: ``a``'s AdamW state after K steps, ``b``
    with zero moments and step ``late_step`` (None: no per-parameter step, i.e. the global K)."""
    params = {n: t.clone() for n, t in ref["phase1_params"].items()}
    exp_avg = {n: ref["phase1"][n]["exp_avg"].clone() for n in ("a", "a_bias")}
    exp_avg_sq = {n: ref["phase1"][n]["exp_avg_sq"].clone() for n in ("a", "a_bias")}
    for n in LATE:
        exp_avg[n], exp_avg_sq[n] = torch.zeros_like(params[n]), torch.zeros_like(params[n])
    steps = {n: int(ref["phase1"][n]["step"]) for n in ("a", "a_bias")}
    steps.update({n: K if late_step is None else late_step for n in LATE})
    adam_step, param_steps = split_steps(steps)
    return FullState(params, exp_avg, exp_avg_sq, adam_step, param_steps)


def engine_for(state: FullState, cfg: Config, src: int | None):
    """Build the phase-2 model and engine and scatter ``state`` into it, as the trainer does (replicated, or
    with the state on rank 0 only and the step counts broadcast before the engine exists)."""
    model = Late()
    model.load_state_dict(state.params, strict=True)
    steps = state.param_steps if src is None else broadcast_param_steps(model, state, src, torch.device("cpu"))
    engine = build_engine(model, cfg, world_size=1, steps=steps)
    scatter_full_state(engine, state, src=src)
    return engine


def train_steps(engine, first: int, n: int) -> None:
    for step in range(first, first + n):
        loss = engine(batch(step))
        engine.backward(loss)
        engine.step()


@pytest.fixture(scope="module")
def ref() -> dict:
    return reference(fused=hasattr(torch, "_fused_adamw_"))  # build_engine's fused=auto


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("zero_stage", "src"), [(0, None), (1, None), (2, None), (2, 0), (3, 0)])
def test_late_parameter_matches_torch_adamw(ref: dict, tmp_path: Path, zero_stage: int, src: int | None) -> None:
    """FullState (b: zero moments, step 0) -> engine -> M steps -> gather -> checkpoint -> new engine -> M2 steps
    equals torch AdamW with b added after K steps: weights, moments and step counts (replicated or from rank 0)."""
    cfg = config(zero_stage)
    init_distributed(cfg)
    engine = engine_for(joined_state(ref), cfg, src)
    groups = engine.optimizer.param_groups
    assert len(groups) == 4  # decay / no-decay x step K / step 0
    b_before = ref["phase1_params"]["b"]
    train_steps(engine, K, 1)
    first = gather_full_state(engine)
    _close(first.params["b"] - b_before, ref["first_update"])
    # a fresh AdamW's first update is lr * g / (|g| + eps) ~ lr per element (+ lr * wd * b), not ~3x
    ratio = (first.params["b"] - b_before).abs() / LR
    assert 0.98 < float(ratio.min()) and float(ratio.max()) < 1.02
    assert first.step_of("b") == first.step_of("b_bias") == 1 and first.step_of("a") == first.adam_step == K + 1
    train_steps(engine, K + 1, M - 1)
    mid = gather_full_state(engine)
    destroy_engine(engine)

    loaded, meta = load_checkpoint(save_checkpoint(tmp_path / "ckpt", K + M, mid, {}, keep_last=1))
    assert loaded.adam_step == K + M and loaded.param_steps == {"b": M, "b_bias": M} == mid.param_steps
    assert checkpoint_steps(meta) == (K + M, {"b": M, "b_bias": M})
    engine = engine_for(loaded, cfg, src)
    train_steps(engine, K + M, M2)
    final = gather_full_state(engine)
    destroy_engine(engine)

    for name, value in ref["final"].items():
        _close(final.params[name], value)
        _close(final.exp_avg[name], ref["moments"][name]["exp_avg"])
        _close(final.exp_avg_sq[name], ref["moments"][name]["exp_avg_sq"])
    assert final.steps() == ref["steps"] == {"a": K + M + M2, "a_bias": K + M + M2, "b": M + M2, "b_bias": M + M2}


@pytest.mark.parametrize("zero_stage", [0, 1, 3])
def test_late_parameter_bf16(ref: dict, zero_stage: int) -> None:
    """bf16 weights with fp32 masters (DeepSpeed's other optimizer wrappers): the late parameter's step
    and its fresh first update on the fp32 master."""
    cfg = config(zero_stage, "bf16")
    init_distributed(cfg)
    engine = engine_for(joined_state(ref), cfg, None)
    train_steps(engine, K, 1)
    state = gather_full_state(engine)
    destroy_engine(engine)
    assert state.steps() == {"a": K + 1, "a_bias": K + 1, "b": 1, "b_bias": 1}
    ratio = (state.params["b"] - ref["phase1_params"]["b"]).abs() / LR
    assert 0.98 < float(ratio.min()) and float(ratio.max()) < 1.02


def test_global_step_for_a_late_parameter_is_the_bug(ref: dict) -> None:
    """What per-parameter steps fix: zero moments bias-corrected with the global step K give a first update of
    lr * (1 - beta1) / (1 - beta1^K) * sqrt((1 - beta2^K) / (1 - beta2)) ~ 2.94 lr per element with beta2 = 0.999
    and K = 2000 (3.16 lr for K -> inf) instead of a fresh parameter's lr. Built without per-parameter steps."""
    cfg = config(0)
    init_distributed(cfg)
    engine = engine_for(joined_state(ref, late_step=None), cfg, None)
    train_steps(engine, K, 1)
    state = gather_full_state(engine)
    destroy_engine(engine)
    ratio = (state.params["b"] - ref["phase1_params"]["b"]).abs() / LR
    assert float(ratio.min()) > 2.5, "a late parameter bias-corrected with the global step moves ~3x lr"
    assert state.param_steps == {}


def test_group_mixing_steps_is_an_error_under_zero(ref: dict) -> None:
    """ZeRO 1-3 step one flat tensor per group with one step count: an engine built without the state's
    steps cannot represent them, and scatter says so instead of silently using one step."""
    cfg = config(2)
    init_distributed(cfg)
    model = Late()
    state = joined_state(ref)
    model.load_state_dict(state.params)
    engine = build_engine(model, cfg, world_size=1)
    try:
        with pytest.raises(ValueError, match="different AdamW step counts"):
            scatter_full_state(engine, state)
    finally:
        destroy_engine(engine)


def test_param_groups_split_by_step() -> None:
    model = Late()
    plain = param_groups(model, WD)
    assert [g["megagrow_names"] for g in plain] == [["a", "b"], ["a_bias", "b_bias"]]
    split = param_groups(model, WD, {"b": 0, "b_bias": 0})
    assert [(g["megagrow_names"], g["weight_decay"]) for g in split] == [
        (["b"], WD), (["a"], WD), (["b_bias"], 0.0), (["a_bias"], 0.0)]
    full = param_groups(model, WD, {"a": 9, "a_bias": 9, "b": 0, "b_bias": 0})
    assert [g["megagrow_names"] for g in full] == [["a"], ["b"], ["a_bias"], ["b_bias"]]
    same = param_groups(model, WD, {"a": 5, "a_bias": 5, "b": 5, "b_bias": 5})
    assert [g["megagrow_names"] for g in same] == [["a", "b"], ["a_bias", "b_bias"]]


# --- operators --------------------------------------------------------------------------------------------

SUFFIXES = {"ln_1.weight": (4,), "attn.qkv.weight": (12, 4)}
NON_BLOCK = {"embed.tokens.weight": (10, 4), "final_ln.weight": (4,)}


def depth_state(n_slots: int, step: int = 7, param_steps: dict[str, int] | None = None) -> FullState:
    params = {n: torch.randn(s) for n, s in NON_BLOCK.items()}
    params.update({f"blocks.{k}.{s}": torch.full(shape, float(k)) for k in range(n_slots)
                   for s, shape in SUFFIXES.items()})
    return FullState(params, {n: t + 100 for n, t in params.items()}, {n: t.abs() + 200 for n, t in params.items()},
                     step, dict(param_steps or {}))


def block_steps(state: FullState, n: int) -> list[int]:
    return [state.step_of(f"blocks.{k}.attn.qkv.weight") for k in range(n)]


def test_state_step_helpers() -> None:
    s = depth_state(2, step=7, param_steps={"blocks.1.ln_1.weight": 3})
    assert s.step_of("blocks.1.ln_1.weight") == 3 and s.step_of("blocks.0.ln_1.weight") == 7
    assert split_steps(s.steps()) == (7, {"blocks.1.ln_1.weight": 3})
    assert split_steps({}) == (0, {})
    with pytest.raises(ValueError, match="negative"):
        split_steps({"x": -1})


def test_expand_depth_steps_per_moment_mode() -> None:
    old = depth_state(3, step=7, param_steps={"blocks.2.attn.qkv.weight": 4, "blocks.2.ln_1.weight": 4})
    copy = expand_depth(old, 3, 6, moments="copy")  # psi = [0, 0, 1, 1, 2, 2]
    assert block_steps(copy, 6) == [7, 7, 7, 7, 4, 4]
    reset = expand_depth(old, 3, 6, moments="reset")
    assert block_steps(reset, 6) == [0] * 6 and reset.adam_step == 7
    assert all(reset.step_of(n) == 7 for n in NON_BLOCK)
    keep = expand_depth(old, 3, 6, moments="keep")  # own slot's moments and step; new slots zero and 0
    assert block_steps(keep, 6) == [7, 7, 4, 0, 0, 0]
    assert not keep.exp_avg["blocks.4.attn.qkv.weight"].any()
    keep_full = expand_depth(depth_state(6), 3, 6, moments="keep")  # the input holds slots 3..5: kept
    assert block_steps(keep_full, 6) == [7] * 6 and keep_full.param_steps == {}
    fresh = expand_depth(old, 3, 6, moments="fresh")
    assert fresh.adam_step == 0 and fresh.param_steps == {} and not fresh.has_optimizer_state()
    stacked = stack_depth(old, 3, 6, moments="copy")  # [0, 1, 2, 0, 1, 2]
    assert block_steps(stacked, 6) == [7, 7, 4, 7, 7, 4]
    passthrough = expand_depth(depth_state(4, param_steps={"blocks.3.attn.qkv.weight": 2}), 2, 3, moments="reset",
                               n_slots=4)
    assert block_steps(passthrough, 4) == [0, 0, 0, 2]
    # an all-reset state equals a fresh one: adam_step is the largest step left
    assert split_steps({n: 0 for n in reset.params if n.startswith("blocks.")}) == (0, {})


def test_multilevel_depth_steps() -> None:
    old = depth_state(4, step=9, param_steps={"blocks.1.attn.qkv.weight": 5, "blocks.1.ln_1.weight": 5})
    coarse = coalesce_depth(old, 4, "adjacent", moments="map")  # groups (0, 1), (2, 3): the largest step
    assert block_steps(coarse, 2) == [9, 9]
    fine = decoalesce_depth(depth_state(2, 9, {"blocks.1.attn.qkv.weight": 5}), 2, "adjacent", moments="map")
    assert block_steps(fine, 4) == [9, 9, 5, 5]
    mixed = interpolate(fine, depth_state(4, step=1), 0.5)
    assert mixed.steps() == fine.steps()
    assert coalesce_depth(old, 4, moments="reset").adam_step == 0


def _model_state(family: str, sizes: dict, step: int, late: dict[str, int]) -> tuple[ModelConfig, FullState]:
    mc = ModelConfig(family=family, vocab_size=64, max_seq_len=16, **sizes)
    params = {n: p.detach().clone() for n, p in build_model(mc).named_parameters()}
    g = torch.Generator().manual_seed(3)
    return mc, FullState(params, {n: 1e-3 * torch.randn(p.shape, generator=g) for n, p in params.items()},
                         {n: 1e-6 * torch.rand(p.shape, generator=g) for n, p in params.items()}, step, late)


def test_msg_new_layers_start_at_step_zero() -> None:
    _, state = _model_state("gpt", dict(hidden=16, n_heads=2, ffn=32, n_layers=2), 9, {})
    grown, _ = msg_grow(state, "gpt", Dims(2, 16, 2, 32), Dims(3, 32, 4, 64))
    assert grown.adam_step == 9
    assert {n for n, s in grown.param_steps.items()} == {n for n in grown.params if n.startswith("blocks.2.")}
    assert all(s == 0 for s in grown.param_steps.values())


def test_bert2bert_keeps_steps() -> None:
    _, state = _model_state("bert", dict(hidden=16, n_heads=2, ffn=32, n_layers=2), 9,
                            {"blocks.1.mlp.fc_in.weight": 4})
    grown = bert2bert(state, "bert", Dims(2, 16, 2, 32), Dims(4, 32, 4, 64), method="fpi")  # stacking [0, 1, 0, 1]
    assert [grown.step_of(f"blocks.{k}.mlp.fc_in.weight") for k in range(4)] == [9, 4, 9, 4]
    assert grown.adam_step == 9


def test_checkpoint_round_trip_and_old_checkpoints(tmp_path: Path) -> None:
    state = depth_state(2, step=7, param_steps={"blocks.1.ln_1.weight": 0, "blocks.1.attn.qkv.weight": 3})
    path = save_checkpoint(tmp_path, 5, state, {}, keep_last=2)
    meta = json.loads((path / "meta.json").read_text())
    assert meta["param_steps"] == {"blocks.1.attn.qkv.weight": 3, "blocks.1.ln_1.weight": 0}
    loaded, _ = load_checkpoint(path)
    assert loaded.adam_step == 7 and loaded.param_steps == state.param_steps and loaded.steps() == state.steps()
    # a checkpoint from before per-parameter steps: every parameter has adam_step
    del meta["param_steps"]
    (path / "meta.json").write_text(json.dumps(meta))
    old, _ = load_checkpoint(path)
    assert old.adam_step == 7 and old.param_steps == {} and set(old.steps().values()) == {7}
    meta["param_steps"] = {"blocks.1.ln_1.weight": 8}
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="param_steps"):
        load_checkpoint(path)
