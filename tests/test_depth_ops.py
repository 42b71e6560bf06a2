"""Depth operators of one-shot growth (growth.depth_op, issue 27): stack, interleave, MIDAS's middle duplication and
identity blocks, as source maps and on a model's state (identity preserves a pre-LN model's function)."""

from __future__ import annotations

import pytest
import torch

from megagrow.config import ConfigError, load_config
from megagrow.growth.ops.stacking import depth_source_map, grow_depth, middle_map
from tests.test_multilevel_ops import COARSE, EXACT_LN, logits, random_state, rel


def test_source_maps_of_each_operator() -> None:
    assert depth_source_map("stack", 3, 6) == [0, 1, 2, 0, 1, 2]
    assert depth_source_map("interleave", 3, 6) == [0, 0, 1, 1, 2, 2]
    assert middle_map(6, 9) == [0, 1, 2, 3, 1, 2, 3, 4, 5]  # the middle three, duplicated in place
    assert middle_map(6, 8) == [0, 1, 2, 3, 2, 3, 4, 5]
    assert middle_map(6, 12) == depth_source_map("stack", 6, 12)  # 2x: the whole model is the middle block
    assert depth_source_map("identity", 3, 6) == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError, match="depth_op"):
        depth_source_map("midas", 3, 6)


@pytest.mark.parametrize("family_id", ["gpt", "bert-preln"])
def test_identity_growth_computes_the_small_model_and_stack_does_not(family_id: str) -> None:
    small = random_state(family_id, moments=True, **COARSE, **EXACT_LN)
    deep = {**COARSE, "n_layers": 4}
    plain = logits(family_id, small, **COARSE, **EXACT_LN)
    grown = grow_depth(small, 2, 4, "identity", moments="copy")
    assert rel(logits(family_id, grown, **deep, **EXACT_LN), plain) <= 1e-6
    assert rel(logits(family_id, grow_depth(small, 2, 4, "stack"), **deep, **EXACT_LN), plain) > 1e-3
    for s in ("attn.proj.weight", "mlp.fc_out.weight"):
        assert not grown.params[f"blocks.3.{s}"].any() and not grown.exp_avg[f"blocks.3.{s}"].any()
        assert torch.equal(grown.params[f"blocks.1.{s}"], small.params[f"blocks.1.{s}"])  # the originals stay
    assert torch.equal(grown.params["blocks.2.mlp.fc_in.weight"], small.params["blocks.0.mlp.fc_in.weight"])


def test_interleave_puts_each_layer_next_to_its_copy() -> None:
    small = random_state("gpt", **COARSE)
    grown = grow_depth(small, 2, 4, "interleave", moments="fresh")
    for j, src in enumerate([0, 0, 1, 1]):
        assert torch.equal(grown.params[f"blocks.{j}.attn.qkv.weight"], small.params[f"blocks.{src}.attn.qkv.weight"])
    assert not grown.exp_avg  # fresh: no moments


def test_depth_op_belongs_to_the_stacking_plans() -> None:
    with pytest.raises(ConfigError, match="growth.depth_op=identity"):
        load_config(None, ["--growth.plan=apollo", "--growth.stages=[6,12]", "--growth.boundaries=[0.5]",
                           "--growth.depth_op=identity"])
    cfg = load_config(None, ["--growth.plan=stackbert", "--growth.stages=[6,12]", "--growth.boundaries=[0.5]",
                             "--growth.depth_op=identity"])
    assert cfg.growth.depth_op == "identity"


def test_stage_lr_mults_scale_each_stage_and_are_checked() -> None:
    from megagrow.growth.plans import build_plan

    cfg = load_config(None, ["--growth.plan=stackbert", "--growth.stages=[6,12]", "--growth.boundaries=[0.5]",
                             "--growth.stage_lr_mults=[2,1]", "--train.max_steps=100"])
    plan = build_plan("stackbert", 12, cfg.growth, max_steps=100)
    assert [plan.lr_scale(s) for s in (0, 49, 50, 99)] == [2.0, 2.0, 1.0, 1.0]
    assert build_plan("stackbert", 12, load_config(None, ["--growth.plan=stackbert", "--growth.stages=[6,12]",
                                                          "--growth.boundaries=[0.5]"]).growth,
                      max_steps=100).lr_scale(0) == 1.0
    with pytest.raises(ConfigError, match="one per stage"):
        load_config(None, ["--growth.plan=stackbert", "--growth.stages=[6,12]", "--growth.boundaries=[0.5]",
                           "--growth.stage_lr_mults=[2]"])
    with pytest.raises(ConfigError, match="coarse_lr_mult"):
        load_config(None, ["--growth.plan=multilevel", "--growth.boundaries=[0.1,0.5]",
                           "--growth.stage_lr_mults=[2,1]"])
