"""Cross-field checks of a loaded config (:func:`validate`) and the warnings a run prints when it starts."""

from __future__ import annotations

import difflib
import typing

from megagrow.config.schema import Config
from megagrow.growth.config import growth_problems


def suggest(key: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""



def validate(cfg: Config) -> list[str]:
    """Cross-field checks; each problem names the field, the value and what is allowed."""
    from megagrow.growth.plans import PLANS

    p: list[str] = [f"model: {m}" if not m.startswith("model.") else m for m in cfg.model.validate()]

    def positive(name: str, value: float, allow_zero: bool = False) -> None:
        if value < 0 or (value == 0 and not allow_zero):
            p.append(f"{name}={value}: must be {'>= 0' if allow_zero else '> 0'}")

    positive("data.seq_len", cfg.data.seq_len)
    positive("data.micro_batch_size", cfg.data.micro_batch_size)
    positive("data.eval_samples", cfg.data.eval_samples, allow_zero=True)
    positive("data.synthetic_train_samples", cfg.data.synthetic_train_samples)
    positive("optim.lr", cfg.optim.lr)
    positive("optim.warmup_steps", cfg.optim.warmup_steps, allow_zero=True)
    positive("optim.weight_decay", cfg.optim.weight_decay, allow_zero=True)
    positive("optim.grad_clip", cfg.optim.grad_clip, allow_zero=True)
    positive("optim.eps", cfg.optim.eps)
    positive("train.max_steps", cfg.train.max_steps)
    positive("train.grad_accum", cfg.train.grad_accum)
    positive("train.eval_every", cfg.train.eval_every, allow_zero=True)
    positive("train.exit_at_step", cfg.train.exit_at_step, allow_zero=True)
    positive("train.max_consecutive_skips", cfg.train.max_consecutive_skips)
    positive("train.loss_chunk", cfg.train.loss_chunk, allow_zero=True)
    positive("checkpoint.every", cfg.checkpoint.every, allow_zero=True)
    positive("checkpoint.keep_last", cfg.checkpoint.keep_last)
    positive("logging.log_every", cfg.logging.log_every)
    ps = cfg.logging.profile_steps
    if ps and (len(ps) != 2 or not 1 <= ps[0] <= ps[1]):
        p.append(f"logging.profile_steps={ps}: expected [] or [first, last] with 1 <= first <= last")
    positive("distributed.timeout_minutes", cfg.distributed.timeout_minutes)
    for name, v in (("optim.beta1", cfg.optim.beta1), ("optim.beta2", cfg.optim.beta2)):
        if not 0 <= v < 1:
            p.append(f"{name}={v}: must be in [0, 1)")
    if cfg.train.compile and cfg.distributed.zero_stage == 3:
        p.append("train.compile=true with distributed.zero_stage=3: compile works with ZeRO 0-2 (ZeRO-3's parameter "
                 "hooks break the compiled graph); set one of them differently")
    if not 0 < cfg.optim.decay_fraction <= 1:
        p.append(f"optim.decay_fraction={cfg.optim.decay_fraction}: must be in (0, 1]")
    if not 0 <= cfg.optim.min_lr_ratio <= 1:
        p.append(f"optim.min_lr_ratio={cfg.optim.min_lr_ratio}: must be in [0, 1]")
    if not 0 < cfg.data.mask_prob < 1:
        p.append(f"data.mask_prob={cfg.data.mask_prob}: must be in (0, 1)")
    if cfg.distributed.zero_stage not in (0, 1, 2, 3):
        p.append(f"distributed.zero_stage={cfg.distributed.zero_stage}: must be one of 0, 1, 2, 3")
    if cfg.distributed.bucket_elements < 0:
        p.append(f"distributed.bucket_elements={cfg.distributed.bucket_elements}: must be >= 0 (0 = DeepSpeed's "
                 "defaults)")
    if cfg.distributed.full_state == "streamed" and cfg.distributed.zero_stage != 3:
        p.append(f"distributed.full_state=streamed with distributed.zero_stage={cfg.distributed.zero_stage}: streamed "
                 "transitions write into ZeRO-3 partitions; use zero_stage=3, or full_state=rank0/replicated")
    p += growth_problems(cfg.growth, cfg.model, cfg.train.max_steps)
    if cfg.growth.plan not in PLANS:
        p.append(f"growth.plan={cfg.growth.plan!r}: unknown plan; available: {sorted(PLANS)}"
                 + suggest(cfg.growth.plan, PLANS))
    fam = cfg.model.family
    if fam in ("bert", "gpt"):
        if cfg.data.kind != "text":
            p.append(f"data.kind={cfg.data.kind!r}: model.family={fam!r} needs 'text'")
        if cfg.data.seq_len > cfg.model.max_seq_len:
            p.append(f"data.seq_len={cfg.data.seq_len}: must be <= model.max_seq_len={cfg.model.max_seq_len}")
    elif fam == "deit" and cfg.data.kind == "text":
        p.append("data.kind='text': model.family='deit' needs 'images' or 'synthetic-images'")
    if fam != "bert":
        for name in ("bert_pairs", "whole_word_masking", "nsp"):
            if getattr(cfg.data, name):
                p.append(f"data.{name}=true: only for model.family='bert' (this is {fam!r})")
    if cfg.data.nsp and not cfg.data.bert_pairs:
        p.append("data.nsp=true: needs data.bert_pairs=true")
    if not 0 <= cfg.data.short_seq_prob <= 1:
        p.append(f"data.short_seq_prob={cfg.data.short_seq_prob}: must be in [0, 1]")
    if not 0 < cfg.data.augment_scale_min <= 1:
        p.append(f"data.augment_scale_min={cfg.data.augment_scale_min}: must be in (0, 1]")
    for name in ("mixup", "cutmix"):
        if getattr(cfg.data, name) < 0:
            p.append(f"data.{name}={getattr(cfg.data, name)}: must be >= 0 (0 = off)")
    if not 0 <= cfg.data.mix_switch_prob <= 1:
        p.append(f"data.mix_switch_prob={cfg.data.mix_switch_prob}: must be in [0, 1]")
    if not 0 <= cfg.data.label_smoothing < 1:
        p.append(f"data.label_smoothing={cfg.data.label_smoothing}: must be in [0, 1)")
    if cfg.checkpoint.resume not in ("auto", "never") and not cfg.checkpoint.resume:
        p.append("checkpoint.resume='': expected 'auto', 'never' or a checkpoint path")
    from megagrow.checkpointing.resume import allow_list_problems, flatten

    p += allow_list_problems(cfg.checkpoint.allow_changes, flatten(cfg.to_dict()))
    return p


def warnings_for(cfg: Config) -> list[str]:
    """Settings that are valid but probably not what was meant (printed when a run starts)."""
    w = list(cfg.__dict__.get("load_notes", []))
    if cfg.optim.warmup_steps >= cfg.train.max_steps:
        w.append(f"optim.warmup_steps={cfg.optim.warmup_steps} >= train.max_steps={cfg.train.max_steps}: the LR "
                 "never reaches optim.lr and never decays")
    return w

