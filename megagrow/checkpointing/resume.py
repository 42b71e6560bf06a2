"""Resume compatibility, decided in one place: what may change between a checkpoint and the run resuming it.

A run directory is the unit people trust: its checkpoint was written by one resolved config, and the
command that resumes it brings another. :func:`compare` classifies every difference between the two by
one table, :data:`RULES` (first matching pattern wins; ``megagrow config --docs`` names the fields):

* ``neutral`` — where the run lives or how this invocation behaves (``run.out_dir``, ``logging.progress``,
  ``checkpoint.resume``, ``train.exit_at_step``, communication settings): no message, not recorded.
  ``data.path`` is neutral here because the loader compares the dataset's *fingerprint*, which is what
  matters (refused unless ``data.allow_fingerprint_change``).
* ``honoured`` — changes the trainer can honour exactly from the resume step on: world size and ZeRO stage
  (the global batch is compared on its own), ``train.max_steps`` (the growth schedule is compared on its
  own), evaluation / logging / checkpoint cadence, the LR and its schedule. The run proceeds; each change
  is logged once and appended to ``config.history.yaml``.
* ``allowable`` — changes that can be honoured but alter what the run trains from the resume step on
  (precision, AdamW's other hyperparameters, dropout, masking and augmentation, the seed): refused unless
  listed in ``checkpoint.allow_changes``; then honoured like the above.
* ``incompatible`` — the model architecture, the growth plan and its schedule, the dataset's kind and
  sample layout, the sequence length and the global batch (``micro_batch_size x grad_accum x world
  size``: the data cursor counts global batches). Refused, naming each field with old -> new; the way out
  is a new ``run.name``.

Three keys are *derived* rather than config fields: ``distributed.world_size`` (from the checkpoint's
``world_size``), ``train.global_batch`` and ``growth.schedule`` (the plan's phase starts as resolved steps,
so that ``growth.boundaries`` given as fractions of ``train.max_steps`` cannot move silently).

Everything here is a pure function over plain dicts (``dataclasses.asdict`` of a config, or the
``config`` of a checkpoint's ``meta.json``); :func:`megagrow.config.config_from_meta` rebuilds a typed config from
such a dict (this module never imports the config: the config imports it).
"""

from __future__ import annotations

import difflib
import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from megagrow.growth.config import section_lr_keys, section_resume_rules


class Kind(StrEnum):
    NEUTRAL = "neutral"
    HONOURED = "honoured"
    ALLOWABLE = "allowable"
    INCOMPATIBLE = "incompatible"


@dataclass(frozen=True)
class Rule:
    pattern: str  # a dotted config key, or a section wildcard such as ``model.*``
    kind: Kind
    why: str  # what the field is, as the messages name it


N, H, A, X = Kind.NEUTRAL, Kind.HONOURED, Kind.ALLOWABLE, Kind.INCOMPATIBLE

#: The classification table: the first rule whose pattern matches a key decides (specific keys before the
#: section wildcards). ``tests/test_resume.py`` checks that every config field is covered.
RULES: tuple[Rule, ...] = (
    # neutral: where the run lives, how this invocation behaves, how ranks talk
    Rule("run.name", N, "run name"),
    Rule("run.out_dir", N, "parent of run directories"),
    Rule("checkpoint.resume", N, "what this invocation resumes from"),
    Rule("checkpoint.allow_changes", N, "changes this invocation allows"),
    Rule("train.exit_at_step", N, "a stop point of this invocation"),
    Rule("logging.progress", N, "console display"),
    Rule("distributed.backend", N, "communication backend"),
    Rule("distributed.timeout_minutes", N, "collective timeout"),
    Rule("distributed.check_decisions", N, "a debugging check"),
    Rule("distributed.full_state", N, "where the full state lives during transitions"),
    Rule("distributed.stream_spill", N, "where a streamed transition keeps the old partitions"),
    Rule("optim.fused", N, "AdamW implementation"),
    Rule("train.allocator", N, "host memory allocator"),
    Rule("data.path", N, "dataset location; the dataset itself is compared by its fingerprint"),
    Rule("data.allow_fingerprint_change", N, "dataset fingerprint override"),
    Rule("data.verify", N, "background check of the shards' hashes"),
    Rule("model.init_from", N, "start weights of a fresh run; a resume continues from the checkpoint's"),
    # honoured: exact from the resume step on; logged once and recorded
    Rule("distributed.world_size", H, "world size; the global batch is compared on its own"),
    Rule("distributed.zero_stage", H, "ZeRO stage"),
    Rule("distributed.bucket_elements", H, "DeepSpeed's communication buckets (the gradients' summation order)"),
    Rule("data.micro_batch_size", H, "per-rank micro-batch; the global batch is compared on its own"),
    Rule("train.grad_accum", H, "gradient accumulation; the global batch is compared on its own"),
    Rule("train.max_steps", H, "run length; the growth schedule is compared on its own"),
    Rule("train.eval_every", H, "evaluation cadence"),
    Rule("data.eval_samples", H, "validation samples per evaluation; val_loss before and after differ in noise"),
    Rule("logging.log_every", H, "logging cadence"),
    Rule("logging.tensorboard", H, "TensorBoard output"),
    Rule("logging.profile_steps", N, "profiling window"),
    Rule("checkpoint.every", H, "checkpoint cadence"),
    Rule("checkpoint.keep_last", H, "checkpoints kept"),
    Rule("checkpoint.save_final", H, "final checkpoint"),
    Rule("train.nonfinite", H, "non-finite step policy"),
    Rule("train.max_consecutive_skips", H, "non-finite step policy"),
    Rule("train.compile", H, "torch.compile: the same math, fused (rounding may differ)"),
    Rule("train.activation_checkpointing", H, "blocks recomputed in the backward pass: the same math"),
    Rule("train.phase_batching", H, "small phases' micro-batches merged: the same samples and loss to rounding"),
    Rule("train.loss_chunk", H, "LM head + loss run in chunks: the same math (rounding may differ)"),
    Rule("optim.lr", H, "peak LR"),
    Rule("optim.min_lr_ratio", H, "LR floor"),
    Rule("optim.schedule", H, "LR schedule"),
    Rule("optim.decay_fraction", H, "share of the run the wsd LR schedule decays in"),
    Rule("optim.wsd_decay_shape", H, "shape of the wsd LR decay"),
    Rule("optim.warmup_steps", H, "LR warmup"),
    Rule("growth.lr_policy", H, "LR policy at transitions"),
    Rule("growth.boundaries", H, "how the growth schedule is written; the resolved schedule is compared"),
    Rule("growth.boundary_unit", H, "how the growth schedule is written; the resolved schedule is compared"),
    # allowable: honoured only when named in checkpoint.allow_changes
    Rule("train.precision", A, "precision; checkpoints hold fp32 master weights"),
    Rule("optim.weight_decay", A, "AdamW hyperparameter"),
    Rule("optim.beta1", A, "AdamW hyperparameter"),
    Rule("optim.beta2", A, "AdamW hyperparameter"),
    Rule("optim.eps", A, "AdamW hyperparameter"),
    Rule("optim.grad_clip", A, "gradient clipping"),
    Rule("growth.stage_lr_mults", A, "LR multiplier per stage"),
    Rule("model.dropout", A, "dropout; regularisation, not architecture"),
    Rule("model.attn_dropout", A, "dropout; regularisation, not architecture"),
    Rule("run.seed", A, "seed of data order, masking, sampled depths and dropout"),
    Rule("data.mask_prob", A, "masking"),
    Rule("data.whole_word_masking", A, "masking"),
    Rule("data.short_seq_prob", A, "sentence-pair lengths"),
    Rule("data.augment", A, "image augmentation"),
    Rule("data.augment_scale_min", A, "image augmentation"),
    Rule("data.hflip", A, "image augmentation"),
    Rule("data.mixup", A, "image augmentation"),
    Rule("data.cutmix", A, "image augmentation"),
    Rule("data.mix_switch_prob", A, "image augmentation"),
    Rule("data.label_smoothing", A, "image augmentation"),
    # incompatible: the model, the plan, the data's layout, the global batch
    Rule("train.global_batch", X, "global batch = data.micro_batch_size x train.grad_accum x world size; the "
                                  "data cursor counts global batches"),
    Rule("growth.schedule", X, "growth schedule before the resume step; phase starts in steps"),
    # a phase that has not started yet may move: the run is the same as if it had been started with the new
    # schedule (its past is), exactly as train.max_steps may change (megagrow plan tune forks its probes this way)
    Rule("growth.schedule_ahead", H, "growth schedule from the resume step on; phase starts in steps"),
    # a method's options (growth.<method>.*): the rules its options class declares
    *(Rule(key, Kind(kind), why) for key, kind, why in section_resume_rules()),
    Rule("growth.*", X, "growth plan"),
    Rule("model.*", X, "model architecture"),
    Rule("data.seq_len", X, "sequence length"),
    Rule("data.*", X, "dataset"),
)

#: Keys computed from the checkpoint and the run rather than read from a config section.
DERIVED = ("distributed.world_size", "train.global_batch", "growth.schedule", "growth.schedule_ahead")

#: Keys whose change alters the LR at the resume step (the log line states the LR before and after).
LR_KEYS = frozenset({"optim.lr", "optim.min_lr_ratio", "optim.schedule", "optim.decay_fraction",
                     "optim.wsd_decay_shape", "optim.warmup_steps", "growth.lr_policy", "train.max_steps",
                     "growth.stage_lr_mults", *section_lr_keys()})

_UNCLASSIFIED = Rule("*", A, "not classified for resume")


def rule_for(key: str) -> Rule:
    """The first rule of :data:`RULES` matching ``key`` (an unlisted key needs ``checkpoint.allow_changes``)."""
    return next((r for r in RULES if fnmatch.fnmatchcase(key, r.pattern)), _UNCLASSIFIED)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1e-3}}`` -> ``{"optim.lr": 1e-3}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def resume_view(config: Mapping[str, Any], world_size: int, schedule: str | None,
                ahead: str | None = None) -> dict[str, Any]:
    """The flat view of a resolved config that :func:`compare` compares, with the derived keys.
    ``schedule`` and ``ahead``: :func:`schedule_split` of the config's plan at the resume step (its part before
    the step, and from it on), or None when it cannot be computed."""
    view = flatten(config)
    data, train = config.get("data", {}), config.get("train", {})
    view["distributed.world_size"] = int(world_size)
    if "micro_batch_size" in data and "grad_accum" in train:
        view["train.global_batch"] = int(data["micro_batch_size"]) * int(train["grad_accum"]) * int(world_size)
    if schedule is not None:
        view["growth.schedule"] = schedule
    if ahead is not None:
        view["growth.schedule_ahead"] = ahead
    return view


def schedule_split(plan: Any, step: int) -> tuple[str, str]:
    """A plan's schedule cut at a resume step: ``(past, ahead)``. The past (phase starts before ``step``, and
    MSG's mask ramp, which is always compared) must stay; phases starting at ``step`` or later may move."""
    starts = list(plan.starts)
    past = [s for s in starts if s < step]
    return (f"phase starts {past}" + plan.schedule_extras(),
            f"phase starts from step {step}: {[s for s in starts if s >= step]}")


@dataclass(frozen=True)
class Change:
    key: str
    old: Any
    new: Any
    rule: Rule
    allowed: bool = False  # an ``allowable`` change named in checkpoint.allow_changes

    @property
    def refused(self) -> bool:
        return self.rule.kind is Kind.INCOMPATIBLE or (self.rule.kind is Kind.ALLOWABLE and not self.allowed)

    def line(self) -> str:
        why = self.rule.why + ("; allowed by checkpoint.allow_changes" if self.allowed else "")
        fmt = str if self.key in DERIVED else json.dumps
        return f"{self.key}: {fmt(self.old)} -> {fmt(self.new)} ({why})"


@dataclass(frozen=True)
class Verdict:
    """Every non-neutral difference between a checkpoint's config and the resuming run's."""

    changes: tuple[Change, ...]

    @property
    def refused(self) -> list[Change]:
        return [c for c in self.changes if c.refused]

    @property
    def honoured(self) -> list[Change]:
        return [c for c in self.changes if not c.refused]

    @property
    def lr_changed(self) -> bool:
        return any(c.key in LR_KEYS for c in self.honoured)


def compare(old: Mapping[str, Any], new: Mapping[str, Any], allow: Iterable[str] = ()) -> Verdict:
    """Classify every key whose value differs between two :func:`resume_view`\\ s. Keys present on one side
    only (a field added or removed by another megagrow version) are not compared; neither are neutral keys."""
    allowed = set(allow)
    changes = []
    for key in sorted(set(old) & set(new)):
        if _same(old[key], new[key]):
            continue
        rule = rule_for(key)
        if rule.kind is Kind.NEUTRAL:
            continue
        changes.append(Change(key, old[key], new[key], rule, allowed=rule.kind is Kind.ALLOWABLE and key in allowed))
    return Verdict(tuple(changes))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return a == b


class ResumeRefused(ValueError):
    """The run's config differs from its checkpoint's in ways that cannot be honoured."""


def refusal_message(verdict: Verdict, run_dir: str, checkpoint: str) -> str:
    """Every refused change with old -> new, and the ways out."""
    refused = verdict.refused
    lines = [f"{run_dir} cannot resume from {checkpoint} with this config; it differs from the checkpoint's:"]
    lines += [f"  - {c.line()}" for c in refused]
    lines.append("Ways out: restore these values, or start a new run with --run.name=NEW (or "
                 "--checkpoint.resume=never to restart this one from scratch; its outputs are moved aside to "
                 f"{Path(run_dir).name}.previous-<time>, not deleted)")
    allowable = [c.key for c in refused if c.rule.kind is Kind.ALLOWABLE]
    if allowable:
        lines.append(f"  or accept the changes that can be honoured: --checkpoint.allow_changes=[{','.join(allowable)}]"
                     + (" (the others cannot)" if len(allowable) < len(refused) else ""))
    moved = {c.key for c in verdict.changes} >= {"growth.schedule", "train.max_steps"}
    if moved and not any(c.key.startswith("growth.") and c.key != "growth.schedule" for c in refused):
        lines.append("  (growth.boundary_unit=fraction boundaries move with train.max_steps: give them in steps, "
                     "growth.boundary_unit=steps, to keep the phases where they were)")
    return "\n".join(lines)


def lr_line(step: int, old_lr: float, new_lr: float, schedule: str, max_steps: int, policy: str) -> str:
    """The LR schedule's behaviour at the resume point, e.g. 'cosine over train.max_steps=2000 ...: the LR
    at step 1200 jumps from 3.2e-04 to 6.1e-04'."""
    head = f"LR: {schedule} over train.max_steps={max_steps} (growth.lr_policy {policy})"
    if abs(new_lr - old_lr) <= 1e-12 * max(abs(old_lr), abs(new_lr), 1e-30):
        return f"{head}: the LR at step {step} stays {new_lr:.4g}"
    return f"{head}: the LR at step {step} {'jumps' if new_lr > old_lr else 'drops'} from {old_lr:.4g} to {new_lr:.4g}"


def history_entry(verdict: Verdict, step: int, checkpoint: str, time: str) -> dict[str, Any]:
    """One entry of ``config.history.yaml``: the honoured changes and the step they apply from."""
    return {"step": step, "checkpoint": checkpoint, "time": time,
            "changes": {c.key: {"old": c.old, "new": c.new, "class": str(c.rule.kind)} for c in verdict.honoured}}


def allow_list_problems(allow: Iterable[str], known: Iterable[str]) -> list[str]:
    """Problems with ``checkpoint.allow_changes``: unknown keys (with a suggestion) and keys that can never be
    honoured. ``known``: every config key (dotted)."""
    keys = [*known, *DERIVED]
    problems = []
    for key in allow:
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
            problems.append(f"checkpoint.allow_changes: unknown key {key!r}"
                            + (f"; did you mean '{close[0]}'?" if close else ""))
        elif rule_for(key).kind is Kind.INCOMPATIBLE:
            problems.append(f"checkpoint.allow_changes: {key!r} ({rule_for(key).why}) can never change within a "
                            "run; start a new run (--run.name=NEW)")
    return problems
