"""The ``growth:`` section of the config: the plan and its options, and their checks against the model. Plans read
it (``megagrow/growth/plans/``); the rest of megagrow only passes it along."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from megagrow.fields import doc


@dataclass
class GrowthConfig:
    plan: str = doc("growth plan: how the executed architecture changes over training (scratch, stackbert, gstack, "
                    "apollo, multilevel, apollo+multilevel, bert2bert, msg, ligo, subpath)", "scratch")
    stages: list[int] = doc("live layers per stage, e.g. [1, 3, 6, 12]; the last equals model.n_layers", [])
    boundaries: list[float] = doc("start of stages 2.. (one per stage after the first), in boundary_unit", [])
    stage_lr_mults: list[float] = doc(
        "apollo, stackbert, gstack, subpath: a multiplier on the LR schedule per stage (one per entry of stages; "
        "empty = 1 everywhere), e.g. [2, 1] for a small stage at twice the grown model's peak LR (G_stack's 1e-3 "
        "small / 3e-4 grown; No Train No Gain's (L / L_active)^(1/4))", [])
    boundary_unit: Literal["fraction", "steps", "tokens"] = doc(
        "boundaries as fractions of train.max_steps, optimizer steps, or training tokens", "fraction")
    sampler: Literal["lvps", "uniform", "full", "edge", "live"] = doc(
        "apollo, apollo+multilevel, subpath: depth sampler drawn per micro-batch (LVPS = low-value-prioritized; "
        "live = the stage's live layers exactly: RaPTr's fixed path length per stage under subpath)", "lvps")
    layer_map: Literal["interpolation", "stacking"] = doc(
        "apollo: how sampled depth positions map to live weight sets, and how stages expand: stacking (the default "
        "and configs/plans/apollo.yaml's: measured better in both suites, docs/growth-pays.md) or interpolation "
        "(the paper's)", "stacking")
    depth_op: Literal["stack", "interleave", "middle", "identity"] = doc(
        "stackbert, gstack: how a depth growth makes the new layers: stack (the whole model on top of itself, the "
        "papers'), interleave (each layer followed by its copies: Apollo's interpolation map), middle (MIDAS, "
        "Saunshi et al. 2024: the middle n_new - n_old layers duplicated in place; at 2x and more it is stack), "
        "identity (stack, with the copies' residual-writing projections attn.proj and mlp.fc_out and their moments "
        "zeroed: the grown pre-LN model computes exactly the small one)", "stack")
    moments: Literal["auto", "copy", "reset", "keep", "fresh"] = doc(
        "AdamW moments at a transition: auto = what the method's paper did (apollo keep, stackbert fresh, "
        "multilevel reset); copy (with the weights), reset (zero for grown blocks), keep (stay with the slot "
        "index), fresh (all moments and the Adam step reset)", "auto")
    lr_policy: Literal["auto", "continue", "rewarm", "reset"] = doc(
        "LR at transitions: auto = the method's paper (multilevel reset, others continue); continue = one global "
        "schedule; rewarm = global schedule re-ramped over optim.warmup_steps; reset = a fresh schedule per phase",
        "auto")
    b2b_method: Literal["aki", "fpi"] = doc("bert2bert: width growth, AKI (paper's best) or FPI (function preserving)",
                                            "aki")
    msg_ramp_steps: float = doc("msg: steps over which the masks of the grown units ramp from 0 to 1 after the "
                                "growth step; < 1 = a fraction of train.max_steps, >= 1 = optimizer steps (an "
                                "integer); 0 = no ramp (the plain grown model at once)", 0.1)
    levels: int = doc("multilevel: number of levels of the V-cycle (2 or 3); boundaries need 2*(levels-1)", 2)
    alpha: float | None = doc("multilevel: interpolation weight of the pre-coalescing model; none = paper default "
                              "(bert 0.5, gpt/deit 0.25)", None)
    coarse_lr_mult: float = doc("multilevel: LR multiplier per coarsening level (the paper's small model: 4x)", 4.0)
    width_pairing: Literal["half", "adjacent"] = doc("multilevel: merge unit i with i+n/2 (paper) or i+1", "half")
    depth_pairing: Literal["adjacent", "half"] = doc("multilevel: merge layers 2i,2i+1 (paper) or i, i+L/2", "adjacent")
    depth_decoalesce: Literal["copy", "zero"] = doc(
        "multilevel: the fine layers a coarse layer becomes at de-coalescing: copy (paper: each a copy, so the layer "
        "runs twice) or zero (the first a copy, the others with their residual-writing projections attn.proj and "
        "mlp.fc_out zeroed: identity blocks in a pre-LN model, so depth de-coalescing preserves its function)", "copy")
    residual_scale: bool = doc(
        "multilevel, gpt: also scale the residual-writing projections x2 when coalescing and x0.5 when "
        "de-coalescing, so that width de-coalescing preserves a pre-LN model's function (the paper's does not)",
        False)
    ligo_steps: int = doc("ligo: optimizer steps training the growth operator (small weights frozen) at the growth "
                          "step; each uses one global batch of the run's data and is charged its FLOPs", 100)
    ligo_lr: float | None = doc("ligo: LR of the operator training (constant); none = optim.lr", None)
    ligo_width_init: Literal["rand", "sel"] = doc(
        "ligo: init of the width expanders: rand (new units = random convex combinations of old units, the "
        "reference default) or sel (random copies)", "rand")
    ligo_depth_noise: float = doc("ligo: U(0, noise) added to the stacking init of the depth coefficients", 0.03)


def growth_problems(g: GrowthConfig, model: Any, max_steps: int) -> list[str]:
    """Every problem of the growth section for this model (:class:`~megagrow.models.spec.ModelConfig`), one line
    each naming the field, its value and what was expected."""
    p: list[str] = []
    if g.stage_lr_mults:
        if g.plan not in ("apollo", "stackbert", "gstack", "subpath"):
            p.append(f"growth.stage_lr_mults={g.stage_lr_mults}: only staged plans (apollo, stackbert, gstack, "
                     f"subpath) take a per-stage LR (growth.plan={g.plan}); multilevel has growth.coarse_lr_mult")
        elif len(g.stage_lr_mults) != len(g.stages):
            p.append(f"growth.stage_lr_mults={g.stage_lr_mults}: need one per stage (growth.stages={g.stages})")
        elif any(not m > 0 for m in g.stage_lr_mults):
            p.append(f"growth.stage_lr_mults={g.stage_lr_mults}: every multiplier must be > 0")
    if g.depth_op != "stack" and g.plan not in ("stackbert", "gstack"):
        p.append(f"growth.depth_op={g.depth_op}: only stackbert and gstack grow depth by a depth operator "
                 f"(growth.plan={g.plan}); leave it at stack")
    if g.plan in ("bert2bert", "msg", "ligo"):
        if len(g.boundaries) != 1:
            p.append(f"growth.boundaries={g.boundaries}: {g.plan} needs exactly one (the growth step)")
        for name, v in (("n_layers", model.n_layers), ("hidden", model.hidden),
                        ("n_heads", model.n_heads), ("ffn", model.ffn_dim)):
            if v % 2:
                p.append(f"model.{name}={v}: {g.plan} starts from half the target; must be even")
    if g.ligo_steps < 0:
        p.append(f"growth.ligo_steps={g.ligo_steps}: must be >= 0")
    if g.ligo_lr is not None and not g.ligo_lr > 0:
        p.append(f"growth.ligo_lr={g.ligo_lr}: must be > 0 (or none for optim.lr)")
    if g.ligo_depth_noise < 0:
        p.append(f"growth.ligo_depth_noise={g.ligo_depth_noise}: must be >= 0")
    r = g.msg_ramp_steps
    if not r == r or r < 0 or (r >= 1 and r != int(r)):
        p.append(f"growth.msg_ramp_steps={r}: must be a fraction of the run in [0, 1) or a whole number of steps")
    if g.plan in ("multilevel", "apollo+multilevel"):
        if g.levels not in (2, 3):
            p.append(f"growth.levels={g.levels}: must be 2 or 3")
        elif len(g.boundaries) != 2 * (g.levels - 1):
            p.append(f"growth.boundaries={g.boundaries}: multilevel with {g.levels} levels needs "
                     f"{2 * (g.levels - 1)} (coalesce, ..., de-coalesce)")
        m = model
        div = 2 ** (g.levels - 1)
        for name, v in (("n_layers", m.n_layers), ("hidden", m.hidden), ("n_heads", m.n_heads), ("ffn", m.ffn_dim)):
            if v % div:
                p.append(f"model.{name}={v}: multilevel with {g.levels} levels halves it {g.levels - 1} time(s); "
                         f"must be divisible by {div}")
        if g.alpha is not None and not 0 <= g.alpha <= 1:
            p.append(f"growth.alpha={g.alpha}: must be in [0, 1]")
        if g.coarse_lr_mult <= 0:
            p.append(f"growth.coarse_lr_mult={g.coarse_lr_mult}: must be > 0")
        if g.residual_scale and m.family != "gpt":
            p.append(f"growth.residual_scale=true: only for model.family='gpt' (this is {m.family!r}; its width "
                     "de-coalescing already preserves the function)")
    if g.stages:
        if any(n <= 0 for n in g.stages) or list(g.stages) != sorted(set(g.stages)):
            p.append(f"growth.stages={g.stages}: must be positive and strictly increasing")
        elif g.stages[-1] != model.n_layers:
            p.append(f"growth.stages={g.stages}: the last stage must equal model.n_layers={model.n_layers}")
        if len(g.boundaries) != len(g.stages) - 1:
            p.append(f"growth.boundaries={g.boundaries}: need {len(g.stages) - 1} (one per stage after the first)")
        elif list(g.boundaries) != sorted(set(g.boundaries)) or any(b <= 0 for b in g.boundaries):
            p.append(f"growth.boundaries={g.boundaries}: must be positive and strictly increasing")
        elif g.boundary_unit == "fraction" and g.boundaries and g.boundaries[-1] >= 1:
            p.append(f"growth.boundaries={g.boundaries}: fractions of the run must be < 1 (or boundary_unit=steps)")
        elif g.boundary_unit == "steps" and g.boundaries and g.boundaries[-1] >= max_steps:
            p.append(f"growth.boundaries={g.boundaries}: steps must be < train.max_steps={max_steps}")
    return p


__all__ = ["GrowthConfig", "growth_problems"]
