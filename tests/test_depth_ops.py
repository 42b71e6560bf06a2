"""Depth maps and depth expansion / stacking of a FullState (notes §2.3, §2.4, §3.1, §3.5)."""

from __future__ import annotations

import pytest
import torch

from megagrow.growth.ops import (
    MOMENT_MODES,
    expand_depth,
    interpolation_map,
    layer_map,
    stack_depth,
    stacking_map,
)
from megagrow.state import FullState

# --- depth maps ------------------------------------------------------------------------------------


def test_interpolation_map_examples():
    assert interpolation_map(3, 7) == [0, 0, 0, 1, 1, 2, 2]
    assert interpolation_map(6, 12) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # stage transitions 1->3, 3->6, 6->12
    assert interpolation_map(1, 3) == [0, 0, 0]
    assert interpolation_map(3, 6) == [0, 0, 1, 1, 2, 2]
    assert interpolation_map(6, 12) == [k // 2 for k in range(12)]
    assert interpolation_map(5, 5) == [0, 1, 2, 3, 4]
    # integer arithmetic where the reference's int(i / (d/N)) is off by one in floating point
    assert interpolation_map(14, 18) == [i * 14 // 18 for i in range(18)]


def test_stacking_map_examples():
    assert stacking_map(3, 7) == [0, 1, 2, 0, 1, 2, 2]
    assert stacking_map(3, 8) == [0, 1, 2, 0, 1, 2, 1, 2]
    assert stacking_map(6, 9) == [0, 1, 2, 3, 4, 5, 3, 4, 5]
    assert stacking_map(6, 12) == list(range(6)) * 2
    assert stacking_map(3, 6) == [0, 1, 2, 0, 1, 2]
    assert stacking_map(3, 12) == list(range(3)) * 4  # G_stack g = 4
    assert stacking_map(3, 8, tail="mod") == [i % 3 for i in range(8)]
    assert layer_map("stacking", 3, 7) == stacking_map(3, 7)
    assert layer_map("interpolation", 3, 7) == interpolation_map(3, 7)


@pytest.mark.parametrize("kind", ["interpolation", "stacking"])
def test_map_properties_exhaustive(kind):
    for n in range(1, 25):
        for d in range(n, 49):
            m = layer_map(kind, n, d)
            assert len(m) == d and set(m) == set(range(n)), (kind, n, d)  # every live slot used
            if kind == "interpolation":
                assert m == sorted(m) and m[0] == 0 and m[-1] == n - 1  # monotone, contiguous runs
                counts = [m.count(k) for k in range(n)]
                assert max(counts) - min(counts) <= 1
            else:
                assert m[:n] == list(range(n))
            assert all(m[j] <= j for j in range(d))  # sources come at or before the target (in-place safe)


def test_map_errors():
    with pytest.raises(ValueError, match="depth=2 must be >= n_live=3"):
        interpolation_map(3, 2)
    with pytest.raises(ValueError, match="n_live=0 must be >= 1"):
        stacking_map(0, 4)
    with pytest.raises(ValueError, match="n_live must be an integer"):
        interpolation_map(1.0, 4)
    with pytest.raises(ValueError, match="available: interpolation, stacking"):
        layer_map("stack", 3, 6)
    with pytest.raises(ValueError, match="tail"):
        stacking_map(3, 7, tail="bottom")


# --- expand_depth on synthetic states ------------------------------------------------------------

SUFFIXES = {"ln_1.weight": (4,), "attn.qkv.weight": (12, 4), "mlp.fc_in.bias": (16,)}
NON_BLOCK = {"embed.tokens.weight": (10, 4), "final_ln.weight": (4,)}


def make_state(n_slots: int, moments: bool = True, step: int = 7) -> FullState:
    """Slot k's tensors are filled with k + 0.1*j (j = suffix index); moments are value+100 / value+200."""
    params: dict[str, torch.Tensor] = {}
    for name, shape in NON_BLOCK.items():
        params[name] = torch.randn(shape)
    for k in range(n_slots):
        for j, (s, shape) in enumerate(SUFFIXES.items()):
            params[f"blocks.{k}.{s}"] = torch.full(shape, k + 0.1 * j)
    if not moments:
        return FullState(params=params)
    return FullState(params=params, exp_avg={n: t + 100 for n, t in params.items()},
                     exp_avg_sq={n: t + 200 for n, t in params.items()}, adam_step=step)


def slot_value(state: FullState, k: int, table: str = "params") -> float:
    return float(getattr(state, table)[f"blocks.{k}.ln_1.weight"][0])


@pytest.mark.parametrize("n_old,n_new", [(1, 3), (3, 6), (6, 12), (3, 7), (3, 8), (6, 9), (4, 4), (2, 11)])
@pytest.mark.parametrize("kind", ["interpolation", "stacking"])
def test_expand_values_and_copied_moments(kind, n_old, n_new):
    old = make_state(n_old)
    snapshot = {n: t.clone() for n, t in old.params.items()}
    new = expand_depth(old, n_old, n_new, kind=kind)
    psi = layer_map(kind, n_old, n_new)
    expected_names = set(NON_BLOCK) | {f"blocks.{k}.{s}" for k in range(n_new) for s in SUFFIXES}
    assert set(new.params) == set(new.exp_avg) == set(new.exp_avg_sq) == expected_names
    for j in range(n_new):
        for s in SUFFIXES:
            src, dst = f"blocks.{psi[j]}.{s}", f"blocks.{j}.{s}"
            assert torch.equal(new.params[dst], old.params[src])
            assert torch.equal(new.exp_avg[dst], old.exp_avg[src])
            assert torch.equal(new.exp_avg_sq[dst], old.exp_avg_sq[src])
    for name in NON_BLOCK:
        for table in ("params", "exp_avg", "exp_avg_sq"):
            assert torch.equal(getattr(new, table)[name], getattr(old, table)[name])
    assert new.adam_step == old.adam_step
    # pure: input untouched, output shares no memory with the input nor between its slots
    assert all(torch.equal(old.params[n], t) for n, t in snapshot.items())
    ptrs = [t.data_ptr() for t in [*new.params.values(), *new.exp_avg.values(), *new.exp_avg_sq.values()]]
    old_ptrs = {t.data_ptr() for t in [*old.params.values(), *old.exp_avg.values()]}
    assert len(set(ptrs)) == len(ptrs) and not set(ptrs) & old_ptrs


def test_transition_tables_on_state():
    assert [slot_value(expand_depth(make_state(1), 1, 3), k) for k in range(3)] == [0, 0, 0]
    assert [slot_value(expand_depth(make_state(3), 3, 6), k) for k in range(6)] == [0, 0, 1, 1, 2, 2]
    assert [slot_value(expand_depth(make_state(6), 6, 12), k) for k in range(12)] == [k // 2 for k in range(12)]
    assert [slot_value(stack_depth(make_state(3), 3, 6), k) for k in range(6)] == [0, 1, 2, 0, 1, 2]
    assert [slot_value(stack_depth(make_state(3), 3, 12), k) for k in range(12)] == [0, 1, 2] * 4  # G_stack
    assert [slot_value(stack_depth(make_state(3), 3, 8), k) for k in range(8)] == [0, 1, 2, 0, 1, 2, 1, 2]
    assert [slot_value(stack_depth(make_state(3), 3, 8, tail="mod"), k) for k in range(8)] == [0, 1, 2] * 2 + [0, 1]


def test_moment_modes():
    old = make_state(3)
    assert MOMENT_MODES == ("copy", "reset", "keep", "fresh")
    reset = expand_depth(old, 3, 6, moments="reset")
    for j in range(6):
        for s in SUFFIXES:
            assert not reset.exp_avg[f"blocks.{j}.{s}"].any() and not reset.exp_avg_sq[f"blocks.{j}.{s}"].any()
    for name in NON_BLOCK:
        assert torch.equal(reset.exp_avg[name], old.exp_avg[name])
    assert reset.adam_step == 7
    assert [slot_value(reset, k) for k in range(6)] == [0, 0, 1, 1, 2, 2]

    # keep (Apollo release): moments stay with slot indices; slots the input lacks start from zeros
    keep = expand_depth(old, 3, 6, moments="keep")
    assert [slot_value(keep, k, "exp_avg") for k in range(6)] == [100, 101, 102, 0, 0, 0]
    assert [slot_value(keep, k) for k in range(6)] == [0, 0, 1, 1, 2, 2]
    keep_full = expand_depth(make_state(12), 3, 6, moments="keep")  # a full-size state: slots 3..5 exist
    assert [slot_value(keep_full, k, "exp_avg") for k in range(6)] == [100, 101, 102, 103, 104, 105]

    fresh = stack_depth(old, 3, 6, moments="fresh")
    assert fresh.exp_avg == {} and fresh.exp_avg_sq == {} and fresh.adam_step == 0
    assert not fresh.has_optimizer_state()

    for mode in MOMENT_MODES:  # no moments in -> no moments out
        plain = expand_depth(make_state(3, moments=False), 3, 6, moments=mode)
        assert plain.exp_avg == {} and plain.exp_avg_sq == {} and len(plain.params) == len(NON_BLOCK) + 18
    with pytest.raises(ValueError, match="moments='zero'"):
        expand_depth(old, 3, 6, moments="zero")


def test_state_with_more_slots_than_live():
    big = make_state(12)
    for k in range(3, 12):  # non-live slots hold garbage that must not be read
        for s in SUFFIXES:
            big.params[f"blocks.{k}.{s}"].fill_(float("nan"))
    new = expand_depth(big, 3, 6)
    assert sorted({int(n.split(".")[1]) for n in new.params if n.startswith("blocks.")}) == list(range(6))
    assert [slot_value(new, k) for k in range(6)] == [0, 0, 1, 1, 2, 2]
    assert not any(torch.isnan(t).any() for t in new.params.values())
    # n_slots keeps the full-size slot count: slots n_new.. pass through untouched (as the release does)
    full = expand_depth(big, 3, 6, n_slots=12)
    assert [slot_value(full, k) for k in range(6)] == [0, 0, 1, 1, 2, 2]
    assert all(torch.isnan(full.params[f"blocks.{k}.ln_1.weight"]).all() for k in range(6, 12))
    assert slot_value(full, 9, "exp_avg") == 109  # moments of passed-through slots kept too
    with pytest.raises(ValueError, match="n_slots=5 must be an integer >= n_new=6"):
        expand_depth(big, 3, 6, n_slots=5)
    with pytest.raises(ValueError, match="lacks slot"):
        expand_depth(make_state(6), 3, 6, n_slots=8)


def test_expand_errors():
    with pytest.raises(ValueError, match="n_new=2 must be >= n_old=3"):
        expand_depth(make_state(3), 3, 2)
    with pytest.raises(ValueError, match="n_new=2 must be >= n_old=3"):
        stack_depth(make_state(3), 3, 2)
    with pytest.raises(ValueError, match=r"no block slot\(s\) \[3\]"):
        expand_depth(make_state(3), 4, 8)
    with pytest.raises(ValueError, match="unknown depth map kind"):
        expand_depth(make_state(3), 3, 6, kind="stack")
    bad = make_state(3)
    bad.params["blocks.1.ln_1.weight"] = torch.zeros(5)
    with pytest.raises(ValueError, match="slot 1 has different parameters/shapes"):
        expand_depth(bad, 3, 6)
    tied = make_state(2, moments=False)
    tied.params["lm_head.weight"] = tied.params["embed.tokens.weight"]
    with pytest.raises(ValueError, match="share storage"):
        expand_depth(tied, 2, 4)
    partial = make_state(2)
    del partial.exp_avg["final_ln.weight"]
    with pytest.raises(ValueError, match="exp_avg does not cover"):
        expand_depth(partial, 2, 4)
    half = make_state(2)
    half.exp_avg_sq = {}
    with pytest.raises(ValueError, match="not the other Adam moment"):
        expand_depth(half, 2, 4)


# --- a tiny real model: expansion reproduces the shared-weight function exactly --------------------


@pytest.mark.parametrize("kind,shared_map", [("interpolation", [0, 0, 1, 1, 2, 2]), ("stacking", [0, 1, 2, 0, 1, 2])])
def test_expansion_reproduces_shared_weight_model(kind, shared_map):
    from megagrow.models import ModelConfig, build_model

    def cfg(n_layers: int) -> ModelConfig:
        return ModelConfig(family="gpt", n_layers=n_layers, hidden=32, n_heads=2, vocab_size=50, max_seq_len=16)

    torch.manual_seed(0)
    small = build_model(cfg(3)).eval()
    params = {n: t.detach().clone().float() for n, t in small.state_dict().items()}
    state = FullState(params=params)
    grown = expand_depth(state, 3, 6, kind=kind) if kind == "interpolation" else stack_depth(state, 3, 6)
    assert grown.params.keys() == build_model(cfg(6)).state_dict().keys()

    big = build_model(cfg(6)).eval()
    big.load_state_dict(grown.params, strict=True)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 50, (2, 16), generator=g)
    batch = {"input_ids": ids, "labels": torch.randint(0, 50, (2, 16), generator=g)}
    with torch.no_grad():
        out_small = small(batch, shared_map)
        out_big = big(batch, list(range(6)))
    assert torch.equal(out_small.logits, out_big.logits)
    assert torch.equal(out_small.loss, out_big.loss)
