"""``megagrow plan show``: a growth plan's schedule and its expected training FLOPs, without training.

Pure functions over a resolved :class:`~megagrow.config.Config` (no model is allocated, no data read
except the dataset manifest for the vocabulary size when ``model.vocab_size`` is 0):

* phases: contiguous step ranges ``[start, end)`` over which the plan's architecture
  (:meth:`Plan.arch_at`) is constant. Taken from ``plan.starts`` when the plan exposes one (staged
  plans), else found by scanning ``arch_at``/``transition`` over every step (cheap: no decisions drawn);
* per phase, the distribution of the executed depth: the plan's ``depth_pmf(step)`` when it
  has a sampler, else a point mass at ``len(plan.decide(start, 0).layer_map)``;
* expected training FLOPs per optimizer step = sum_d P(d) * train_flops(arch, d, ...) for one global
  batch of G = micro_batch_size * grad_accum samples (world size 1 unless given: FLOPs scale linearly with
  the world size, the ratio to scratch does not). BERT's head runs on masked positions only: the expected
  count ``mask_prob * G * seq_len`` is used;
* per phase, the LR: the plan's multiplier (``Plan.lr_scale``, e.g. a coarse level's 4x) and what the LR
  policy at transitions (``growth.lr_policy``; ``auto`` = the method's paper) does at the phase's start.

"Scratch" is the full target model (``model.n_layers`` layers, every step) for the same steps and tokens.
New plans need no edits here as long as they answer the :class:`~megagrow.growth.plans.Plan` protocol.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from megagrow.flops import Arch, deit_seq_len, train_flops
from megagrow.models.spec import ModelConfig

# megagrow-prep's default tokenizer size: used when model.vocab_size is 0 and the data is not prepared.
ASSUMED_VOCAB = 8000
_ARCH_FIELDS = ("n_layers", "hidden", "n_heads", "ffn")


@dataclass
class Phase:
    name: str
    start_step: int
    end_step: int  # exclusive
    n_layers: int
    hidden: int
    sampler: str
    pmf: dict[int, float]
    expected_depth: float
    flops_per_step: float
    arch: dict[str, int] = field(default_factory=dict)
    lr_mult: float = 1.0  # the plan's multiplier on the LR schedule in this phase
    lr_policy: str = ""  # what the LR does at the phase's start: warmup, continue, rewarm or reset
    lr_start: float = 0.0  # the LR of the phase's first step

    @property
    def steps(self) -> int:
        return self.end_step - self.start_step

    @property
    def flops(self) -> float:
        return self.flops_per_step * self.steps


@dataclass
class PlanSummary:
    plan: str
    target: dict[str, Any]
    max_steps: int
    global_batch: int
    seq_len: int  # tokens per sample entering the blocks
    tokens: int  # tokens of the whole run (global_batch * seq_len * max_steps)
    phases: list[Phase]
    transitions: list[dict[str, Any]]
    scratch_flops_per_step: float
    notes: list[str] = field(default_factory=list)
    lr: dict[str, Any] = field(default_factory=dict)  # schedule, peak, warmup_steps, lr_policy (config, effective)
    model_source: str = "config"  # "config", or "defaults" when the config has no model section

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.seq_len

    @property
    def flops(self) -> float:
        return sum(p.flops for p in self.phases) + sum(t.get("fit_flops", 0) for t in self.transitions)

    @property
    def scratch_flops(self) -> float:
        return self.scratch_flops_per_step * self.max_steps

    @property
    def flops_ratio(self) -> float:
        return self.flops / self.scratch_flops

    def to_dict(self) -> dict[str, Any]:
        tps = self.tokens_per_step
        return {
            "plan": self.plan,
            "target": self.target,
            "max_steps": self.max_steps,
            "global_batch": self.global_batch,
            "seq_len": self.seq_len,
            "tokens": self.tokens,
            "phases": [
                {
                    "name": p.name,
                    "start_step": p.start_step,
                    "end_step": p.end_step,
                    "start_tokens": p.start_step * tps,
                    "end_tokens": p.end_step * tps,
                    "n_layers": p.n_layers,
                    "hidden": p.hidden,
                    "arch": p.arch,
                    "sampler": p.sampler,
                    "pmf": {str(d): v for d, v in p.pmf.items()},
                    "expected_depth": p.expected_depth,
                    "flops_per_step": p.flops_per_step,
                    "flops": p.flops,
                    "lr_mult": p.lr_mult,
                    "lr_policy": p.lr_policy,
                    "lr_start": p.lr_start,
                }
                for p in self.phases
            ],
            "transitions": self.transitions,
            "lr": self.lr,
            "model_source": self.model_source,
            "flops": self.flops,
            "scratch_flops": self.scratch_flops,
            "flops_ratio": self.flops_ratio,
            "flops_basis": f"expected training FLOPs (forward + backward) per global batch of {self.global_batch} "
                           "samples",
            "notes": self.notes,
        }


# --------------------------------------------------------------------------------------------------
# architecture and per-step FLOPs


def model_at(target: ModelConfig, arch: dict[str, int]) -> ModelConfig:
    """The target model config with the fields a plan's ``arch_at`` changes (n_layers, hidden, ...)."""
    return dataclasses.replace(target, **{k: int(v) for k, v in arch.items() if k in _ARCH_FIELDS})


def seq_len_of(cfg) -> int:
    """Tokens per sample entering the transformer blocks (as the trainer's data bundle reports it)."""
    m = cfg.model
    if m.family == "deit":
        return deit_seq_len(m.image_size, m.patch_size, m.n_prefix_tokens)
    return cfg.data.seq_len


def predictions_per_sample(cfg, seq_len: int) -> float:
    """Expected positions the output head runs on per sample (BERT: the masked ones)."""
    m = cfg.model
    if m.family == "gpt":
        return float(seq_len)
    if m.family == "bert":
        return cfg.data.mask_prob * seq_len
    return float(m.n_prefix_tokens)  # deit: class (and distillation) head, one prediction each


def expected_step_flops(arch: Arch, pmf: dict[int, float], batch: int, seq_len: int, n_predictions: float) -> float:
    """sum_d P(d) * train_flops(arch, d, batch, seq_len, n_predictions), zero-probability depths skipped."""
    total = 0.0
    for d, p in pmf.items():
        if p:
            total += p * train_flops(arch, int(d), batch, seq_len, n_predictions)  # type: ignore[arg-type]
    return total


def resolve_vocab(cfg) -> tuple[int, str]:
    """``(vocab_size, where it came from)``: the config, the prepared data's manifest, or an assumption."""
    m = cfg.model
    if m.family == "deit" or m.vocab_size:
        return m.vocab_size, "config"
    from megagrow.config import expand_path

    try:
        manifest = json.loads((expand_path(cfg.data.path) / "manifest.json").read_text())
        v = int(manifest["tokenizer"]["vocab_size"])
        if v > 0:
            return v, "data manifest"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return ASSUMED_VOCAB, "assumed"


# --------------------------------------------------------------------------------------------------
# phases


def _segments(plan, max_steps: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, end)`` ranges of constant architecture."""
    starts = plan.starts
    if isinstance(starts, list | tuple) and starts and starts[0] == 0 and all(isinstance(s, int) for s in starts):
        cut = sorted({int(s) for s in starts if 0 <= s < max_steps})
    else:  # generic: scan (arch_at and transition only, no decisions are drawn)
        cut = [0]
        prev = plan.arch_at(0)
        for step in range(1, max_steps):
            a = plan.arch_at(step)
            if a != prev or plan.transition(step) is not None:
                cut.append(step)
            prev = a
    return list(zip(cut, [*cut[1:], max_steps], strict=True))


def _pmf_for(plan, start: int) -> tuple[str, dict[int, float]]:
    pmf = plan.depth_pmf(start)
    if pmf is None:
        return "fixed", {len(plan.decide(start, 0).layer_map): 1.0}
    return plan.depth_sampler, pmf


def _fit_cost(t, old: ModelConfig, new: ModelConfig, cfg, G: int, seq: int, npred: float) -> dict[str, Any]:
    """A learned transition's extra work: ``fit_steps`` global batches through the new model (full depth)
    plus the operator's own FLOPs for every micro-batch (from the old model's shapes, built on meta)."""
    import torch

    from megagrow.models import build_model

    per_step = expected_step_flops(new.arch(), {new.n_layers: 1.0}, G, seq, npred)
    op = 0
    if t.fit_flops is not None:
        with torch.device("meta"):
            shapes = {n: tuple(p.shape) for n, p in build_model(old).named_parameters()}
        op = t.fit_flops(shapes) * cfg.train.grad_accum
    return {"fit_steps": t.fit_steps, "fit_tokens": t.fit_steps * G * seq,
            "fit_flops": t.fit_steps * (per_step + op), "fit_operator_flops": t.fit_steps * op}


def _phase_lr(cfg, plan, policy: str, start: int) -> tuple[float, str, float]:
    """``(multiplier, what the policy does at the phase start, LR of its first step)``."""
    from megagrow.trainer.lr_schedule import phase_lr

    o = cfg.optim
    mult = float(plan.lr_scale(start))
    lr = mult * phase_lr(start, starts=list(plan.starts), max_steps=cfg.train.max_steps, policy=policy, peak=o.lr,
                         warmup_steps=o.warmup_steps, schedule=o.schedule, min_lr_ratio=o.min_lr_ratio,
                         decay_fraction=o.decay_fraction, wsd_decay_shape=o.wsd_decay_shape)
    if start == 0:
        what = f"warmup {o.warmup_steps}" if o.warmup_steps else "peak"
    elif start not in plan.starts:  # a phase found by scanning, not a transition of the LR schedule
        what = "continue"
    else:
        what = {"rewarm": f"rewarm {o.warmup_steps}", "reset": "reset (fresh schedule)"}.get(policy, policy)
    return mult, what, lr


def warmup_notes(phases: list[Phase], warmup_steps: int) -> list[str]:
    """A warning for each phase that starts a warmup (the run's, or a rewarm) longer than the phase itself."""
    out = []
    for i, ph in enumerate(phases):
        if not warmup_steps or not ph.lr_policy.startswith(("warmup", "rewarm")) or warmup_steps <= ph.steps:
            continue
        then = (f"the LR is still warming up when {phases[i + 1].name} starts at step {ph.end_step}"
                if i + 1 < len(phases) else "the LR never reaches its peak")
        out.append(f"warning: optim.warmup_steps={warmup_steps} is longer than phase {ph.name} (steps "
                   f"{ph.start_step}-{ph.end_step}, {ph.steps} steps) whose start warms up: {then}")
    return out


def default_model_note(m: ModelConfig) -> str:
    return (f"the config names no model: assumed the default model ({m.family}, {m.n_layers} layers, hidden "
            f"{m.hidden}, {m.n_heads} heads; `megagrow config --docs`). Show a config that includes the plan "
            "(e.g. configs/gpt-tiny-apollo.yaml) or add --model.size=NAME")


def summarize(cfg, world_size: int = 1, model_source: str = "config") -> PlanSummary:
    """The schedule of ``cfg``'s growth plan with expected FLOPs; raises ``ValueError`` on a bad plan.
    ``model_source``: "defaults" when the config named no model (a plan file alone): said in a note."""
    from megagrow.growth.plans import build_plan

    max_steps = cfg.train.max_steps
    notes: list[str] = []
    vocab, source = resolve_vocab(cfg)
    target = dataclasses.replace(cfg.model, vocab_size=vocab)
    G = cfg.global_batch_size(world_size)
    seq = seq_len_of(cfg)
    plan = build_plan(cfg.growth.plan, cfg.model.n_layers, cfg.growth, cfg.run.seed, max_steps, model=target,
                      tokens_per_step=G * seq)
    if source == "assumed":
        notes.append(f"model.vocab_size=0 and no prepared data at data.path={cfg.data.path}: assumed vocab "
                     f"{vocab} (megagrow-prep's default); set --model.vocab_size for the real head FLOPs")
    if model_source == "defaults":
        notes.insert(0, default_model_note(cfg.model))
    npred = predictions_per_sample(cfg, seq) * G
    policy = plan.lr_policy if cfg.growth.lr_policy == "auto" else cfg.growth.lr_policy

    phases: list[Phase] = []
    transitions: list[dict[str, Any]] = []
    for start, end in _segments(plan, max_steps):
        arch = dict(plan.arch_at(start))
        if start > 0:
            t = plan.transition(start)
            if t is not None:
                record: dict[str, Any] = {"step": start, "name": t.name, "arch": dict(t.arch)}
                if t.fit_steps:
                    record.update(_fit_cost(t, model_at(target, plan.arch_at(start - 1)), model_at(target, arch),
                                            cfg, G, seq, npred))
                transitions.append(record)
        m = model_at(target, arch)
        sampler, pmf = _pmf_for(plan, start)
        lr_mult, lr_policy, lr_start = _phase_lr(cfg, plan, policy, start)
        phases.append(Phase(
            name=plan.decide(start, 0).phase,
            start_step=start,
            end_step=end,
            n_layers=m.n_layers,
            hidden=m.hidden,
            sampler=sampler,
            pmf=pmf,
            expected_depth=sum(d * p for d, p in pmf.items()),
            flops_per_step=expected_step_flops(m.arch(), pmf, G, seq, npred),
            arch=arch,
            lr_mult=lr_mult,
            lr_policy=lr_policy,
            lr_start=lr_start,
        ))
    notes += warmup_notes(phases, cfg.optim.warmup_steps)
    extra = sum(t.get("fit_tokens", 0) for t in transitions)
    if extra:
        notes.append(f"learned transitions read {_si(extra)} tokens beyond the run's {_si(G * seq * max_steps)}; "
                     "their FLOPs are in the plan's total")
    scratch = expected_step_flops(target.arch(), {target.n_layers: 1.0}, G, seq, npred)
    return PlanSummary(
        plan=cfg.growth.plan,
        target={"family": target.family, "n_layers": target.n_layers, "hidden": target.hidden,
                "n_heads": target.n_heads, "ffn": target.ffn_dim, "vocab_size": vocab, "vocab_source": source},
        max_steps=max_steps,
        global_batch=G,
        seq_len=seq,
        tokens=G * seq * max_steps,
        phases=phases,
        transitions=transitions,
        scratch_flops_per_step=scratch,
        notes=notes,
        lr={"schedule": cfg.optim.schedule, "peak": cfg.optim.lr, "warmup_steps": cfg.optim.warmup_steps,
            "min_lr_ratio": cfg.optim.min_lr_ratio, "lr_policy": cfg.growth.lr_policy, "effective_policy": policy},
        model_source=model_source,
    )


# --------------------------------------------------------------------------------------------------
# rendering


def _si(x: float, unit: str = "") -> str:
    for div, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{prefix}{unit}"
    return f"{x:.3g}{unit}"


def compact_pmf(pmf: dict[int, float], max_items: int = 4) -> str:
    """``3:0.637 4:0.104 … 12:0.016`` (zero-probability depths dropped)."""
    items = [f"{d}:{p:.3g}" for d, p in sorted(pmf.items()) if p > 0]
    if len(items) > max_items:
        items = [*items[:2], "…", items[-1]]
    return " ".join(items)


def render_table(s: PlanSummary) -> str:
    t = s.target
    tps = s.tokens_per_step
    lines = [
        f"plan {s.plan}: target {t['family']} {t['n_layers']} layers, hidden {t['hidden']}"
        + (f", vocab {t['vocab_size']} ({t['vocab_source']})" if t["family"] != "deit" else "")
        + f"; {s.max_steps} steps x global batch {s.global_batch} x {s.seq_len} tokens "
        f"= {_si(s.tokens)} tokens",
    ]
    notes = list(s.notes)
    if s.model_source == "defaults" and notes:
        lines.append(f"model: {notes.pop(0)}")
    lr = s.lr
    if lr:
        auto = f" ({lr['effective_policy']}, the method's paper)" if lr["lr_policy"] == "auto" else ""
        at = f"; at transitions growth.lr_policy {lr['lr_policy']}{auto}" if len(s.phases) > 1 else ""
        lines.append(f"LR: {lr['schedule']}, peak {lr['peak']:g}, warmup {lr['warmup_steps']} steps, floor "
                     f"{lr['min_lr_ratio']:g}x{at}")
    header = ["phase", "steps", "tokens", "layers", "hidden", "sampler", "pmf (depth:P)", "E[depth]", "LR x",
              "LR policy", "FLOPs"]
    rows = [
        [p.name, f"[{p.start_step}, {p.end_step})", f"[{_si(p.start_step * tps)}, {_si(p.end_step * tps)})",
         str(p.n_layers), str(p.hidden), p.sampler, compact_pmf(p.pmf), f"{p.expected_depth:.2f}", f"{p.lr_mult:g}",
         p.lr_policy, _si(p.flops)]
        for p in s.phases
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines += [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r).rstrip() for r in rows]
    for tr in s.transitions:
        lines.append(f"transition at step {tr['step']}: {transition_text(tr['name'], tr['arch'])}")
        if tr.get("fit_steps"):
            lines.append(f"  learned operator: {tr['fit_steps']} steps on {_si(tr['fit_tokens'])} extra tokens, "
                         f"{_si(tr['fit_flops'])} FLOPs (operator itself {_si(tr['fit_operator_flops'])})")
    lines.append(f"expected FLOPs {_si(s.flops)} vs scratch {_si(s.scratch_flops)} for the same {_si(s.tokens)} "
                 f"tokens: ratio {s.flops_ratio:.4f} (training FLOPs per global batch of {s.global_batch} samples)")
    lines += [n if n.startswith("warning:") else f"note: {n}" for n in notes]
    return "\n".join(lines)


def transition_text(name: str, arch: dict[str, int]) -> str:
    """``name -> arch``, the architecture once (a name that already ends with it is left alone)."""
    return name if name.rstrip().endswith(str(arch)) else f"{name} -> {arch}"


def render_json(s: PlanSummary) -> str:
    return json.dumps(s.to_dict(), indent=2)


__all__ = ["ASSUMED_VOCAB", "Phase", "PlanSummary", "compact_pmf",
           "expected_step_flops", "render_json", "render_table", "summarize", "transition_text"]
