"""Streaming growth operators (:mod:`megagrow.growth.trace`): every output of every plan's transitions, computed
from only the source tensors it depends on, equals the operator's own output bit for bit; elementwise outputs
computed slice by slice too."""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import torch

from megagrow.growth.ops.bert2bert import bert2bert, fpi_width
from megagrow.growth.ops.depth import expand_depth
from megagrow.growth.ops.msg import msg_grow
from megagrow.growth.ops.multilevel import coalesce_depth, interpolate
from megagrow.growth.ops.stacking import grow_depth
from megagrow.growth.plans import build_plan
from megagrow.growth.trace import NotStreamable, Shard, Sym, Trace, partition_of, symbolic_state, trace
from megagrow.models import build_model
from megagrow.models.dims import Dims
from megagrow.state import MOMENTS, FullState, with_steps
from tests.test_plans import APOLLO_ML, MULTILEVEL, ONE_STEP_GROWTH, STAGED
from tests.trainutil import tiny_config

PLANS = {**STAGED, **{k: v for k, v in ONE_STEP_GROWTH.items() if k != "ligo"}, "multilevel": MULTILEVEL,
         "multilevel-3": [*MULTILEVEL[:1], "--growth.multilevel.levels=3", "--growth.boundaries=3,6,9,12",
                          *MULTILEVEL[3:]],
         "multilevel-map": [*MULTILEVEL, "--growth.moments=copy", "--growth.multilevel.depth_decoalesce=zero"],
         "apollo-reset": [*STAGED["apollo"], "--growth.moments=reset"],
         "apollo+multilevel": APOLLO_ML}  # subpath and scratch have no transitions


def _random_state(model: torch.nn.Module, seed: int, step: int) -> FullState:
    g = torch.Generator().manual_seed(seed)
    params = {n: torch.randn(p.shape, generator=g) for n, p in model.named_parameters()}
    avg = {n: torch.randn(t.shape, generator=g) * 1e-3 for n, t in params.items()}
    sq = {n: torch.rand(t.shape, generator=g) * 1e-6 for n, t in params.items()}
    steps = {n: step - (i % 3 == 0) for i, n in enumerate(params)}  # two step counts, as after a growth
    return with_steps(params, avg, sq, steps)


def _check_trace(op, state: FullState, traced_op=None) -> Trace:
    """Run ``op`` on ``state`` and ``traced_op`` (default ``op``) on its symbolic twin; every output and step
    count must agree."""
    real = op(copy.deepcopy(state))
    shapes = {n: tuple(t.shape) for n, t in state.params.items()}
    t = trace(traced_op or op, lambda tr: symbolic_state(tr, shapes, bool(state.exp_avg), state.steps()))
    assert t.result is not None
    assert t.result.steps() == real.steps() and t.result.adam_step == real.adam_step
    fetched: list[tuple[str, str]] = []

    def full(key: tuple[str, str]) -> torch.Tensor:
        if key[0] == "shard":
            shard = t.shards[key]
            return shard.local[: shard.numel()].view(shard.shape).clone()
        return getattr(state, key[0])[key[1]].clone()

    def fetch(key: tuple[str, str]) -> torch.Tensor:
        fetched.append(key)
        return full(key)

    for table, name, sym in t.outputs():
        want = getattr(real, table)[name]
        fetched.clear()
        got = t.compute(sym, fetch)
        assert got.dtype == want.dtype and got.shape == want.shape, (table, name)
        assert torch.equal(got, want), (table, name)
        assert sorted(fetched) == sorted(t.sources(sym)), (table, name)  # reads exactly what it declares
        plan = t.local_plan(sym)
        if plan is not None:
            flat = want.flatten()
            for lo, n in ((0, flat.numel()), (1, max(flat.numel() // 3, 1)), (flat.numel() // 2, 7)):
                n = max(0, min(n, flat.numel() - lo))
                part = t.compute_slice(sym, plan, lambda k, lo=lo, n=n: full(k).flatten()[lo:lo + n], n)
                assert torch.equal(part, flat[lo:lo + n]), (table, name, lo, n)
    for table in ("params", *MOMENTS):
        assert list(getattr(t.result, table)) == list(getattr(real, table))
    t.real_state = state  # type: ignore[attr-defined]
    return t


@pytest.mark.parametrize("family", ["gpt", "bert"])
@pytest.mark.parametrize("plan", sorted(PLANS))
def test_every_transition_streams_bit_identically(plan: str, family: str, tmp_path: Path) -> None:
    extra = ["--growth.multilevel.residual_scale=true"] if plan == "multilevel-map" and family == "gpt" else []
    cfg = tiny_config(family, tmp_path, plan, *PLANS[plan], *extra, "--train.max_steps=16")
    plans = [build_plan(cfg.growth.plan, cfg.model.n_layers, cfg.growth, seed=0, max_steps=16, model=cfg.model)
             for _ in range(2)]  # one runs the operators, the other is traced
    seen = 0
    for step in range(16):
        real, traced = (p.transition(step) for p in plans)
        if real is None:
            continue
        model = build_model(replace(cfg.model, vocab_size=96, **plans[0].arch_at(step - 1)))
        t = _check_trace(real.operator, _random_state(model, seed=step, step=step), traced.operator)
        _realize_plan_state(plans[1], t)
        seen += 1
    assert seen > 0
    assert {k: tuple(v.shape) for k, v in plans[0].state_tensors().items()} == {}


def _realize_plan_state(plan, t: Trace) -> None:
    """Plan state the traced operator kept (multi-level's snapshot: symbolic tensors) becomes shards of one
    rank, computed from the real state, as the streamed executor does with the ranks' partitions."""
    kept = plan.state_tensors()
    if not any(isinstance(v, Sym) for v in kept.values()):
        return
    state = t.real_state  # type: ignore[attr-defined]
    plan.load_state_tensors({k: Shard(partition_of(t.compute(v, lambda key: getattr(state, key[0])[key[1]]), 0, 1),
                                      tuple(v.shape), 0, 1) if isinstance(v, Sym) else v for k, v in kept.items()})


OPS = {
    "msg-random": lambda f, a, b: partial(msg_grow_state, family=f, src=a, dst=b, seed=3, new_layer_init="random"),
    "msg-reset": lambda f, a, b: partial(msg_grow_state, family=f, src=a, dst=b, moments="reset"),
    "fpi-uniform": lambda f, a, b: partial(fpi_width, family=f, src=a, dst=b, seed=5, sampling="uniform"),
    "aki-reset": lambda f, a, b: partial(bert2bert, family=f, src=a, dst=b, moments="reset"),
    "grow-identity": lambda f, a, b: partial(grow_depth, n_old=a.n_layers, n_new=b.n_layers, op="identity"),
    "grow-middle": lambda f, a, b: partial(grow_depth, n_old=a.n_layers, n_new=b.n_layers + 1, op="middle"),
    "apollo-keep": lambda f, a, b: partial(expand_depth, n_old=a.n_layers, n_new=b.n_layers + 1, moments="keep"),
}


def msg_grow_state(state: FullState, **kw) -> FullState:
    return msg_grow(state, **kw)[0]


@pytest.mark.parametrize("family", ["gpt", "bert"])
@pytest.mark.parametrize("op", sorted(OPS))
def test_operator_options_stream_bit_identically(op: str, family: str, tmp_path: Path) -> None:
    model_cfg = replace(tiny_config(family, tmp_path, op, "--model.n_layers=4", "--model.n_heads=4").model,
                        vocab_size=96)
    big = Dims.of(model_cfg)
    small = big.divided(2)
    model = build_model(replace(model_cfg, n_layers=small.n_layers, hidden=small.hidden, n_heads=small.n_heads,
                                ffn=small.ffn))
    _check_trace(OPS[op](family, small, big), _random_state(model, seed=1, step=9))


def _gpt_state(*extra: str) -> FullState:
    return _random_state(build_model(replace(tiny_config("gpt", Path("/tmp"), "x", *extra).model, vocab_size=96)), 0, 5)


def test_elementwise_outputs_are_local_and_width_maps_are_not() -> None:
    state = _gpt_state("--model.n_layers=4")
    shapes = {n: tuple(t.shape) for n, t in state.params.items()}
    grow = trace(lambda s: expand_depth(s, 4, 8, moments="copy"), lambda tr: symbolic_state(tr, shapes, True,
                                                                                             state.steps()))
    name = "blocks.5.attn.qkv.weight"
    assert grow.sources(grow.result.params[name]) == [("params", "blocks.2.attn.qkv.weight")]
    assert grow.local_plan(grow.result.params[name]) is not None
    merge = trace(lambda s: coalesce_depth(s, 4, moments="map"),
                  lambda tr: symbolic_state(tr, shapes, True, state.steps()))
    sq = merge.result.exp_avg_sq["blocks.1.mlp.fc_in.weight"]
    assert merge.sources(sq) == [("exp_avg_sq", f"blocks.{k}.mlp.fc_in.weight") for k in (2, 3)]
    assert merge.local_plan(sq) is not None  # sqrt, add, div, square: elementwise
    mix = trace(lambda s: interpolate(expand_depth(s, 4, 4), s, 0.25),
                lambda tr: symbolic_state(tr, shapes, False, state.steps()))
    assert mix.local_plan(mix.result.params["blocks.0.ln_1.weight"]) is not None


def test_zero_moments_do_not_read_the_parameter() -> None:
    state = _gpt_state()
    shapes = {n: tuple(t.shape) for n, t in state.params.items()}
    t = trace(lambda s: expand_depth(s, 3, 6, moments="reset"), lambda tr: symbolic_state(tr, shapes, True,
                                                                                           state.steps()))
    zero = t.result.exp_avg["blocks.4.attn.proj.weight"]
    assert t.sources(zero) == []
    assert torch.equal(t.compute(zero, lambda k: pytest.fail(f"fetched {k}")), torch.zeros(zero.shape))


def test_reading_the_state_into_python_is_not_streamable() -> None:
    def peek(s: FullState) -> FullState:
        if s.params["w"].abs().max() > 0:
            return s
        return s

    with pytest.raises(NotStreamable, match="reads the value"):
        trace(peek, lambda tr: symbolic_state(tr, {"w": (3,)}, False, {"w": 0}))


def test_writing_the_state_into_an_outside_tensor_is_not_streamable() -> None:
    outside = torch.zeros(3)

    def write(s: FullState) -> FullState:
        outside.copy_(s.params["w"])
        return FullState(params={"w": outside})

    with pytest.raises(NotStreamable, match="outside the operator"):
        trace(write, lambda tr: symbolic_state(tr, {"w": (3,)}, False, {"w": 0}))


def test_a_symbolic_tensor_outside_its_trace_says_so() -> None:
    t = trace(lambda s: FullState(params={"w": s.params["w"] * 2}),
              lambda tr: symbolic_state(tr, {"w": (3,)}, False, {"w": 0}))
    w = t.result.params["w"]
    assert isinstance(w, Sym)
    with pytest.raises(NotStreamable, match="outside its trace"):
        _ = w + 1


def test_an_operator_that_modifies_its_input_is_not_streamable() -> None:
    def double(s: FullState) -> FullState:
        return FullState(params={"w": s.params["w"].mul_(2)})

    with pytest.raises(NotStreamable, match="in place"):
        trace(double, lambda tr: symbolic_state(tr, {"w": (3,)}, False, {"w": 0}))
