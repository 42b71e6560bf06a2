"""The ``growth:`` section of the config: the plan, the schedule fields every staged plan shares, and one options
section per method (``growth.<method>:``, its dataclass defined in the plan's own file), with their checks against
the model. Plans read it (``megagrow/growth/plans/``); the rest of megagrow only passes it along. Configs written
before the sections (flat keys such as ``growth.alpha``) load translated (:func:`translate_legacy`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from megagrow.fields import doc
from megagrow.growth.plans import PLANS
from megagrow.growth.plans.apollo import ApolloOptions
from megagrow.growth.plans.base import MethodOptions
from megagrow.growth.plans.bert2bert import Bert2BertOptions
from megagrow.growth.plans.ligo import LigoOptions
from megagrow.growth.plans.msg import MsgOptions
from megagrow.growth.plans.multilevel import MultilevelOptions


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
    apollo: ApolloOptions = field(default_factory=ApolloOptions, metadata={"help": "apollo's options"})
    multilevel: MultilevelOptions = field(default_factory=MultilevelOptions,
                                          metadata={"help": "multilevel's and apollo+multilevel's options"})
    bert2bert: Bert2BertOptions = field(default_factory=Bert2BertOptions, metadata={"help": "bert2bert's options"})
    msg: MsgOptions = field(default_factory=MsgOptions, metadata={"help": "msg's options"})
    ligo: LigoOptions = field(default_factory=LigoOptions, metadata={"help": "ligo's options"})

    def sections(self) -> dict[str, Any]:
        """Every method's options section by its key (``growth.<key>:``)."""
        return {key: getattr(self, key) for key in SECTIONS}


#: The method option sections: key -> options class (each defined in its plan's file), read off the fields above.
SECTIONS: dict[str, type] = {f.name: f.default_factory for f in fields(GrowthConfig)
                             if isinstance(f.default_factory, type) and issubclass(f.default_factory, MethodOptions)}

#: Flat keys of configs written before the sections (every result committed before issue 28): old -> new.
LEGACY_KEYS: dict[str, tuple[str, str]] = {
    "layer_map": ("apollo", "layer_map"),
    "levels": ("multilevel", "levels"), "alpha": ("multilevel", "alpha"),
    "coarse_lr_mult": ("multilevel", "coarse_lr_mult"), "width_pairing": ("multilevel", "width_pairing"),
    "depth_pairing": ("multilevel", "depth_pairing"), "depth_decoalesce": ("multilevel", "depth_decoalesce"),
    "residual_scale": ("multilevel", "residual_scale"),
    "b2b_method": ("bert2bert", "method"),
    "msg_ramp_steps": ("msg", "ramp_steps"),
    "ligo_steps": ("ligo", "steps"), "ligo_lr": ("ligo", "lr"), "ligo_width_init": ("ligo", "width_init"),
    "ligo_depth_noise": ("ligo", "depth_noise"),
}


def translate_legacy(tree: Mapping[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """A config tree with the flat growth keys of older configs moved into their sections: the new tree, notes
    naming each key moved (shown when a run starts), and problems (an old key and its new one both set,
    differently). Trees without old keys come back unchanged."""
    out = dict(tree)
    g = out.get("growth")
    if not isinstance(g, Mapping) or not any(k in g for k in LEGACY_KEYS):
        return out, [], []
    g = dict(g)
    moved, problems = [], []
    for old, (section, key) in LEGACY_KEYS.items():
        if old not in g:
            continue
        value = g.pop(old)
        sec = g.get(section)
        sec = dict(sec) if isinstance(sec, Mapping) else {}
        if key in sec and sec[key] != value:
            problems.append(f"growth.{old}={value} (an old flat key) and growth.{section}.{key}={sec[key]} are "
                            f"both set, differently: keep growth.{section}.{key} only")
        else:
            sec[key] = value
        g[section] = sec
        moved.append(f"growth.{old} -> growth.{section}.{key}")
    out["growth"] = g
    note = (f"flat growth key(s) of configs before the per-method sections, read as the new keys: {', '.join(moved)}"
            " (write the new keys to silence this)")
    return out, [note], problems


def growth_problems(g: GrowthConfig, model: Any, max_steps: int) -> list[str]:
    """Every problem of the growth section for this model (:class:`~megagrow.models.spec.ModelConfig`), one line
    each naming the field, its value and what was expected: the shared fields here, each section's values by its
    options class, and what the chosen plan needs by the plan (``config_problems``)."""
    p: list[str] = []
    if g.stage_lr_mults:
        if g.plan not in ("apollo", "stackbert", "gstack", "subpath"):
            p.append(f"growth.stage_lr_mults={g.stage_lr_mults}: only staged plans (apollo, stackbert, gstack, "
                     f"subpath) take a per-stage LR (growth.plan={g.plan}); multilevel has "
                     "growth.multilevel.coarse_lr_mult")
        elif len(g.stage_lr_mults) != len(g.stages):
            p.append(f"growth.stage_lr_mults={g.stage_lr_mults}: need one per stage (growth.stages={g.stages})")
        elif any(not m > 0 for m in g.stage_lr_mults):
            p.append(f"growth.stage_lr_mults={g.stage_lr_mults}: every multiplier must be > 0")
    if g.depth_op != "stack" and g.plan not in ("stackbert", "gstack"):
        p.append(f"growth.depth_op={g.depth_op}: only stackbert and gstack grow depth by a depth operator "
                 f"(growth.plan={g.plan}); leave it at stack")
    for options in g.sections().values():
        p += options.problems()
    if g.plan in PLANS:
        p += PLANS[g.plan].config_problems(g, model, max_steps)
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




def section_resume_rules() -> list[tuple[str, str, str]]:
    """``(key, kind, why)`` for the options fields whose change on resume is not simply incompatible (the rest
    fall under ``growth.*``), from each options class's ``resume_rules``."""
    return [(f"growth.{key}.{name}", kind, why) for key, cls in SECTIONS.items()
            for name, (kind, why) in cls.resume_rules.items()]


def section_lr_keys() -> list[str]:
    """The options fields whose change alters the LR (each options class's ``lr_fields``)."""
    return [f"growth.{key}.{name}" for key, cls in SECTIONS.items() for name in cls.lr_fields]


__all__ = ["LEGACY_KEYS", "SECTIONS", "GrowthConfig", "growth_problems", "section_lr_keys", "section_resume_rules",
           "translate_legacy"]
