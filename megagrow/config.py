"""The one source of truth for a run: a tree of typed dataclasses.

Loaded from YAML (``include:`` lists other YAML files merged underneath), then dotted CLI overrides
(``--optim.lr=3e-4 --model.n_layers=6``), then validated. Every error names the field, the bad value
and what is allowed; unknown keys are errors with a close-match suggestion. The resolved tree is
written into the run directory, and the DeepSpeed JSON is *generated* from it
(:func:`deepspeed_config`) — there are no hand-edited DeepSpeed templates.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from megagrow.fields import doc
from megagrow.growth.config import GrowthConfig, growth_problems, translate_legacy
from megagrow.models.sizes import SIZES
from megagrow.models.spec import ModelConfig


class ConfigError(ValueError):
    """Invalid configuration; ``problems`` lists every problem found, one line each."""

    def __init__(self, problems: list[str], source: str = ""):
        self.problems = problems
        head = f"invalid configuration{f' ({source})' if source else ''}:"
        super().__init__("\n".join([head, *(f"  - {p}" for p in problems)]))


@dataclass
class RunConfig:
    name: str = doc("run name; the run directory is <out_dir>/<name>. Empty: the config file's stem", "")
    out_dir: str = doc("parent directory of run directories", "runs")
    seed: int = doc("seed of data order, masking, init and dropout", 1234)


@dataclass
class DataConfig:
    kind: Literal["text", "images", "synthetic-images"] = doc(
        "'text': prepared token shards (bert, gpt); 'images': prepared image shards (deit, e.g. "
        "`megagrow-prep images mnist`); 'synthetic-images': learnable synthetic images (deit)",
        "text",
    )
    path: str = doc(
        "prepared dataset directory (holds manifest.json); ${MEGAGROW_CACHE} and ~ are expanded",
        "${MEGAGROW_CACHE}/sample",
    )
    seq_len: int = doc("tokens per sample (bert, gpt); must be <= model.max_seq_len", 128)
    micro_batch_size: int = doc("samples per micro-batch per rank", 8)
    mask_prob: float = doc("bert: fraction of tokens masked (80% [MASK], 10% random, 10% unchanged)", 0.15)
    bert_pairs: bool = doc("bert: [CLS] A [SEP] B [SEP] samples from the sentence index (else chunks)", False)
    whole_word_masking: bool = doc("bert: mask all pieces of a word together (the budget counts tokens)", False)
    short_seq_prob: float = doc("bert_pairs: probability of a shorter target length (as Google BERT/Megatron)", 0.1)
    nsp: bool = doc("bert_pairs: 50% random B with nsp_labels (off by default, as in both papers)", False)
    eval_samples: int = doc("validation samples evaluated at every evaluation (fixed set); 0 = no evaluation "
                            "(no val_loss)", 256)
    allow_fingerprint_change: bool = doc(
        "resume even if the dataset fingerprint differs from the checkpoint's (keeps the cursor)", False)
    verify: Literal["background", "off"] = doc(
        "text datasets: background = hash every shard (and the tokenizer) the run reads against manifest.json in a "
        "background thread from the start, and stop before the next step with one line naming a file that does not "
        "match; off = only the cheap checks at open (presence, sizes, schema, counts)", "background")
    synthetic_train_samples: int = doc("synthetic-images: size of the training set", 50000)
    augment: bool = doc("images: DeiT-style random resized crop (+ optional flip) on training images", True)
    augment_scale_min: float = doc("images: smallest crop area fraction of the random resized crop", 0.08)
    hflip: bool = doc("images: random horizontal flips (ImageNet yes, digits no)", False)
    mixup: float = doc("images: mixup Beta(alpha, alpha) parameter; 0 = off", 0.0)
    cutmix: float = doc("images: cutmix Beta(alpha, alpha) parameter; 0 = off", 0.0)
    mix_switch_prob: float = doc("images: with mixup and cutmix both on, probability of cutmix", 0.5)
    label_smoothing: float = doc("images: label smoothing applied with mixup/cutmix soft labels", 0.0)


@dataclass
class OptimConfig:
    lr: float = doc("peak learning rate (after warmup)", 1e-3)
    min_lr_ratio: float = doc("final learning rate as a fraction of the peak", 0.1)
    schedule: Literal["cosine", "linear", "constant", "wsd"] = doc(
        "decay after warmup: cosine / linear to min_lr_ratio over the run, constant, or wsd (warmup-stable-decay: "
        "the peak until the last optim.decay_fraction of the run, then one decay to min_lr_ratio; growth plans "
        "grow in the stable phase)", "cosine")
    decay_fraction: float = doc("wsd: the share of the run (of each phase under growth.lr_policy=reset) spent "
                                "decaying at the end", 0.2)
    wsd_decay_shape: Literal["linear", "cosine", "1-sqrt"] = doc(
        "wsd: shape of the final decay; 1-sqrt is the shape Hägele et al. (2024) found best", "linear")
    warmup_steps: int = doc("linear warmup from 0 to lr over this many optimizer steps", 100)
    weight_decay: float = doc("AdamW decoupled weight decay (not applied to biases, norms, tokens)", 0.01)
    beta1: float = doc("AdamW beta1", 0.9)
    beta2: float = doc("AdamW beta2", 0.98)
    eps: float = doc("AdamW epsilon", 1e-8)
    fused: Literal["auto", "on", "off"] = doc("torch fused AdamW: auto = on where the device supports it", "auto")
    grad_clip: float = doc("clip the global gradient norm to this value; 0 disables", 1.0)


@dataclass
class TrainConfig:
    max_steps: int = doc("optimizer steps to train", 1000)
    grad_accum: int = doc("micro-batches accumulated per optimizer step (per rank)", 1)
    precision: Literal["auto", "fp32", "bf16", "bf16-autocast"] = doc(
        "auto = bf16-autocast on a CUDA device with bf16, else fp32 (TF32 matmuls on CUDA); the run's first lines say "
        "what it resolved to and config.yaml records that. fp32; bf16-autocast = fp32 weights, matmuls in bf16 under "
        "torch.autocast (the optimizer is torch AdamW itself: the fast GPU mode); bf16 = DeepSpeed's bf16 (bf16 "
        "weights and activations, fp32 master weights in its optimizer wrapper: a memory mode, ~0.55x the speed of "
        "bf16-autocast on one GPU; docs/gpu.md)", "auto")
    eval_every: int = doc("evaluate validation loss every N steps (and at the end); 0 = only at the end", 100)
    exit_at_step: int = doc("checkpoint and exit (code 0) after this step, as on SIGTERM; 0 = off", 0)
    nonfinite: Literal["skip", "stop"] = doc(
        "a step with a non-finite loss or gradient is never applied; skip = count it and go on (see "
        "max_consecutive_skips), stop = checkpoint the last good state and exit with code 3", "skip")
    max_consecutive_skips: int = doc("nonfinite=skip: this many skipped steps in a row checkpoint and exit (code 3)",
                                     5)
    compile: bool = doc(
        "torch.compile per region, in place (parameter names unchanged): each transformer block (all blocks of one "
        "shape share one compiled graph, so sampled depths, new layer maps and depth transitions reuse it; a width "
        "transition compiles the new shape once) and GPT's head + loss; the metrics carry compile_graphs, "
        "compile_recompiles and compile_s. ZeRO 0-2 only. Measured: benchmarks/throughput", False)
    allocator: Literal["auto", "tcmalloc", "jemalloc", "system"] = doc(
        "host memory allocator of `megagrow train` (it re-executes itself once with the library in LD_PRELOAD): "
        "auto = tcmalloc on CPU runs where installed (glibc malloc unmaps large freed blocks, so each step "
        "faults its logits and activations in again: measured 15-30% of a CPU step, more in small growth "
        "phases; benchmarks/phase_cost.py), else system; tcmalloc/jemalloc = required; system = glibc malloc",
        "auto")
    phase_batching: Literal["auto", "off"] = doc(
        "auto = a growth phase smaller than the target model runs grad_accum micro-batches merged k at a time (k: "
        "the largest divisor of grad_accum whose merged micro-batch costs no more FLOPs than one of the target "
        "model), so a small phase fills the device; the same samples, tokens per step and loss to rounding. GPT and "
        "DeiT, megagrow's own step (ZeRO-0, one rank); off = one forward per micro-batch", "auto")
    activation_checkpointing: bool = doc(
        "recompute each block's activations in the backward pass (torch.utils.checkpoint, non-reentrant, RNG "
        "state preserved: the same losses and gradients): a step keeps each block's input instead of all its "
        "intermediate activations, for one more forward pass of the blocks (not counted in megagrow's model FLOPs)",
        False)
    loss_chunk: int = doc(
        "0 = off (the LM head's logits are materialised); N > 0 = the output projection to the vocabulary and the "
        "cross-entropy run N positions at a time, gradients computed in the forward (fused, as Liger-Kernel's "
        "FusedLinearCrossEntropy): the full [positions, vocab] logits, their fp32 copy and gradient are never "
        "materialised (GPT-Base at 16 x 1024 tokens and a 32k vocabulary: ~2 GiB per step), for the same loss and "
        "gradients (up to rounding). GPT and BERT; the model's forward then returns no logits", 0)


@dataclass
class DistributedConfig:
    zero_stage: int = doc("DeepSpeed ZeRO stage 0-3", 0)
    backend: Literal["auto", "gloo", "nccl"] = doc("torch.distributed backend; auto = nccl on CUDA else gloo", "auto")
    timeout_minutes: float = doc(
        "collective timeout: a rank whose peer died or hangs fails with a clear error after this long instead of "
        "waiting forever (Slurm/torchrun then end the job)", 30.0)
    full_state: Literal["auto", "replicated", "rank0"] = doc(
        "where the full fp32 state lives while a transition maps it (and while a checkpoint is loaded): "
        "'replicated' = on every rank (no extra communication); 'rank0' = on rank 0 only, which applies the "
        "operator and broadcasts the result one tensor at a time, while under ZeRO-3 the new model is built "
        "already partitioned (deepspeed.zero.Init), so no other rank ever holds more than one full tensor; "
        "auto = rank0 under ZeRO-3, else replicated. Learned operators (LiGO) always use replicated", "auto")
    check_decisions: bool = doc(
        "debug: every step, all-reduce the min and max of a hash of each rank's own plan decisions and of the layer "
        "maps it executes (rank 0's, broadcast), and fail naming the step and micro-batch where ranks differ (one "
        "extra small collective per step)", False)


@dataclass
class CheckpointConfig:
    every: int = doc("save a checkpoint every N steps; 0 = only at the end (and on SIGTERM)", 0)
    keep_last: int = doc("keep the newest N checkpoints (older ones are deleted)", 2)
    resume: str = doc("'auto' = newest checkpoint of this run if any; 'never' = start afresh (the run's previous "
                      "outputs are moved aside to <name>.previous-<time>, never deleted); or a checkpoint path", "auto")
    save_final: bool = doc("save a checkpoint after the last step", True)
    allow_changes: list[str] = doc(
        "on resume, config changes to accept that can be honoured but alter what the run trains (e.g. "
        "[train.precision, optim.weight_decay]); the architecture, growth plan and schedule, dataset, sequence "
        "length and global batch can never change within a run (docs/usage.md: Checkpoints)", [])


@dataclass
class LoggingConfig:
    log_every: int = doc("write metrics every N steps", 10)
    tensorboard: bool = doc("write TensorBoard events under <run>/tb", True)
    progress: Literal["auto", "on", "off"] = doc(
        "console progress: on = a progress bar; auto = the bar when stderr is a terminal, else a plain line every "
        "log_every steps (Slurm logs); off = neither (evaluations, transitions and stops are still printed)", "auto")
    profile_steps: list[int] = doc(
        "[first, last]: profile these steps with torch.profiler and write <run>/profile.json (time per phase of the "
        "step: transition, plan, data, forward, backward, clip, sync, optimizer, other) and profile_trace.json; "
        "[] = off", [])


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig, metadata={"help": "run identity and seed"})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "architecture (K slots)"})
    growth: GrowthConfig = field(default_factory=GrowthConfig, metadata={"help": "growth plan"})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "dataset and batching"})
    optim: OptimConfig = field(default_factory=OptimConfig, metadata={"help": "AdamW and LR schedule"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "loop length and precision"})
    distributed: DistributedConfig = field(default_factory=DistributedConfig, metadata={"help": "ZeRO"})
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig, metadata={"help": "save/resume"})
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata={"help": "metrics output"})

    def global_batch_size(self, world_size: int) -> int:
        return self.data.micro_batch_size * self.train.grad_accum * world_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------
# validation


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
    p += growth_problems(cfg.growth, cfg.model, cfg.train.max_steps)
    if cfg.growth.plan not in PLANS:
        p.append(f"growth.plan={cfg.growth.plan!r}: unknown plan; available: {sorted(PLANS)}"
                 + _suggest(cfg.growth.plan, PLANS))
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
    from megagrow.resume import allow_list_problems, flatten

    p += allow_list_problems(cfg.checkpoint.allow_changes, flatten(cfg.to_dict()))
    return p


def warnings_for(cfg: Config) -> list[str]:
    """Settings that are valid but probably not what was meant (printed when a run starts)."""
    w = list(cfg.__dict__.get("load_notes", []))
    if cfg.optim.warmup_steps >= cfg.train.max_steps:
        w.append(f"optim.warmup_steps={cfg.optim.warmup_steps} >= train.max_steps={cfg.train.max_steps}: the LR "
                 "never reaches optim.lr and never decays")
    return w


# --------------------------------------------------------------------------------------------------
# loading: YAML + includes + presets + dotted overrides -> typed tree


def _suggest(key: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _coerce(value: Any, tp: Any, where: str, problems: list[str]) -> Any:
    """Convert ``value`` (from YAML or a CLI string) to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~")):
            return None
        return _coerce(value, args[0], where, problems)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if isinstance(value, bool) and {"on", "off"} <= set(allowed):  # YAML 1.1 reads on/off as booleans
            value = "on" if value else "off"
        if value in allowed:
            return value
        sval = str(value)
        if sval in allowed:
            return sval
        problems.append(f"{where}={value!r}: expected one of {list(allowed)}" + _suggest(sval, map(str, allowed)))
        return allowed[0]
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            text = value.strip().strip("[]")
            value = [v.strip() for v in text.split(",")] if text else []
        if not isinstance(value, list | tuple):
            problems.append(f"{where}={value!r}: expected a list, e.g. [1, 3, 6]")
            return []
        return [_coerce(v, item, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        problems.append(f"{where}={value!r}: expected a boolean (true/false)")
        return False
    if tp is int:
        if isinstance(value, bool):
            problems.append(f"{where}={value!r}: expected an integer")
            return 0
        if isinstance(value, int):
            return value
        try:
            f = float(str(value).replace("_", ""))
            if f.is_integer():
                return int(f)
        except ValueError:
            pass
        problems.append(f"{where}={value!r}: expected an integer")
        return 0
    if tp is float:
        if isinstance(value, bool):
            problems.append(f"{where}={value!r}: expected a number")
            return 0.0
        try:
            return float(value)
        except (TypeError, ValueError):
            problems.append(f"{where}={value!r}: expected a number (e.g. 3e-4)")
            return 0.0
    if tp is str:
        if isinstance(value, dict | list):
            problems.append(f"{where}={value!r}: expected a string")
            return ""
        return str(value)
    raise TypeError(f"config field {where}: unsupported annotation {tp!r}")


def _build(cls: type, data: dict[str, Any], prefix: str, problems: list[str]) -> Any:
    if not isinstance(data, dict):
        problems.append(f"{prefix or 'config'}: expected a mapping of fields, got {data!r}")
        data = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            section = prefix.rstrip(".") or "config"
            problems.append(f"unknown config key '{where}'{hint} (valid keys of '{section}': {sorted(fields)})")
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value if value is not None else {}, f"{where}.", problems)
        else:
            kwargs[key] = _coerce(value, tp, where, problems)
    return cls(**kwargs)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _translated(tree: dict[str, Any], where: str, notes: list[str] | None) -> dict[str, Any]:
    """``tree`` (one file's own keys, or the overrides) with older configs' flat growth keys moved into their
    sections (:func:`~megagrow.growth.config.translate_legacy`), each source on its own so that an old key given
    as an override still overrides a new-style file."""
    tree, moved, problems = translate_legacy(tree)
    if problems:
        raise ConfigError(problems, where)
    if notes is not None:
        notes += [f"{where}: {m}" for m in moved]
    return tree


def _read_yaml(path: Path, seen: tuple[Path, ...] = (), notes: list[str] | None = None) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError([f"include cycle: {' -> '.join(map(str, (*seen, path)))}"])
    if not path.is_file():
        raise ConfigError([f"config file not found: {path}"])
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError([_yaml_problem(path, e, seen)]) from e
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping at the top level, got {type(data).__name__}"])
    includes = data.pop("include", []) or []
    if isinstance(includes, str):
        includes = [includes]
    merged: dict[str, Any] = {}
    for inc in includes:
        merged = _merge(merged, _read_yaml(path.parent / inc, (*seen, path), notes))
    return _merge(merged, _translated(data, str(path), notes))


def _yaml_problem(path: Path, e: yaml.YAMLError, seen: tuple[Path, ...]) -> str:
    """``FILE:LINE:COL: not valid YAML: what (context)``, naming the including file when there is one."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    what = " ".join(str(x) for x in (getattr(e, "problem", None), getattr(e, "context", None)) if x) or str(e)
    ctx = getattr(e, "context_mark", None)
    if ctx is not None and mark is not None and ctx.line != mark.line:
        what += f" (started at line {ctx.line + 1})"
    line = ""
    if mark is not None:
        lines = path.read_text().splitlines()
        if 0 <= mark.line < len(lines):
            line = f"; line {mark.line + 1}: {lines[mark.line].strip()!r}"
    via = f" (included from {seen[-1]})" if seen else ""
    return f"{where}: not valid YAML: {what}{line}{via}"


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``['--optim.lr=3e-4', '--model.n_layers', '6']`` -> nested dict of strings."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--") or len(a) == 2:
            raise ConfigError([f"override {a!r}: expected --section.key=value"])
        key, eq, value = a[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise ConfigError([f"override --{key}: missing value (use --{key}=VALUE)"])
            value = args[i + 1]
            i += 1
        parts = key.split(".")
        if any(not part for part in parts):
            raise ConfigError([f"override --{key}: malformed key"])
        node = out
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError([f"override --{key}: '{part}' is set both as a value and as a section"])
            node = nxt
        node[parts[-1]] = value
        i += 1
    return out


def _apply_model_preset(model: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    size = model.get("size")
    if size in (None, "", "none", "None"):
        return model
    if size not in SIZES:
        problems.append(f"model.size={size!r}: unknown size; available: {sorted(SIZES)}" + _suggest(str(size), SIZES))
        return model
    return {**SIZES[size], **model}


def config_from_dict(data: dict[str, Any], source: str = "") -> Config:
    data, legacy_notes, problems = translate_legacy(data)
    notes = legacy_notes + _preset_notes(data.get("model"))
    if isinstance(data.get("model"), dict):
        data["model"] = _apply_model_preset(data["model"], problems)
    cfg = _build(Config, data, "", problems)
    if not problems:
        problems = validate(cfg)
    if problems:
        raise ConfigError(problems, source)
    cfg.__dict__["load_notes"] = notes  # not a field: never saved; shown with the warnings when a run starts
    return cfg


def _preset_notes(model: Any) -> list[str]:
    """Warnings about a preset (``model.size``) whose width was overridden but whose MLP width was not: the
    preset's ``ffn`` (4 x its own hidden) stays, which is rarely what was meant."""
    if not isinstance(model, dict) or model.get("size") not in SIZES:
        return []
    preset = SIZES[model["size"]]
    if "hidden" in model and "ffn" not in model and preset.get("ffn") and model["hidden"] != preset.get("hidden"):
        return [f"model.hidden={model['hidden']} overrides model.size={model['size']}'s hidden {preset['hidden']}, "
                f"but model.ffn stays the preset's {preset['ffn']} (4 x {preset['hidden']}); set --model.ffn="
                f"{4 * int(model['hidden'])} for the usual 4 x hidden (or 0, which means that), or set it explicitly "
                "to silence this"]
    return []


def config_tree(path: str | Path | None, overrides: list[str] | None = None,
                notes: list[str] | None = None) -> dict[str, Any]:
    """The raw tree a config is built from: the YAML file with its includes, then the overrides (unvalidated).
    Older configs' flat growth keys are moved into their sections, each file and the overrides on their own; a
    line per move is appended to ``notes``."""
    data: dict[str, Any] = _read_yaml(Path(path), notes=notes) if path else {}
    return _merge(data, _translated(parse_overrides(overrides or []), "overrides", notes))


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load a YAML file (or defaults when ``path`` is None), apply ``--a.b=c`` overrides, validate."""
    moved: list[str] = []
    data = config_tree(path, overrides, moved)
    cfg = config_from_dict(data, str(path or "defaults"))
    cfg.__dict__["load_notes"] = moved + cfg.__dict__.get("load_notes", [])
    if not cfg.run.name and path:
        cfg.run.name = Path(path).stem
    return cfg


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def describe(cls: type = Config, prefix: str = "") -> list[str]:
    """Documentation of every field: ``section.key (type, default): help``."""
    lines: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            lines.append(f"{prefix}{f.name}: {f.metadata.get('help', '')}")
            lines.extend(describe(tp, f"{prefix}{f.name}."))
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            tname = _type_name(tp)
            lines.append(f"  --{prefix}{f.name} ({tname}, default {default!r}): {f.metadata.get('help', '')}")
    return lines


def _type_name(tp: Any) -> str:
    """``int``, ``one of a|b|c``, ``list[int]``, ``float | None`` — for the field documentation."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + "|".join(map(str, typing.get_args(tp)))
    if origin is list:
        return f"list[{_type_name(typing.get_args(tp)[0])}]"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) if a is not type(None) else "None" for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def expand_path(path: str) -> Path:
    """Expand ``${MEGAGROW_CACHE}`` (default ``~/.cache/megagrow``), other env vars and ``~``."""
    cache = os.environ.get("MEGAGROW_CACHE") or str(Path.home() / ".cache" / "megagrow")
    return Path(os.path.expanduser(os.path.expandvars(path.replace("${MEGAGROW_CACHE}", cache))))


# --------------------------------------------------------------------------------------------------
# DeepSpeed JSON, generated


def deepspeed_config(cfg: Config, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config for this run. The optimizer and LR schedule are ours (torch AdamW, set
    per step from :mod:`megagrow.schedule`), so they do not appear here."""
    from megagrow.faults import owns_step
    from megagrow.precision import concrete

    stage = cfg.distributed.zero_stage
    precision = concrete(cfg.train.precision)
    zero: dict[str, Any] = {"stage": stage}
    if stage >= 2:
        zero.update(overlap_comm=False, contiguous_gradients=True)
    if stage == 3:
        zero.update(stage3_param_persistence_threshold=0)
    return {
        "train_batch_size": cfg.global_batch_size(world_size),
        "train_micro_batch_size_per_gpu": cfg.data.micro_batch_size,
        "gradient_accumulation_steps": cfg.train.grad_accum,
        # ZeRO-0 without DeepSpeed's bf16 wrapper: megagrow clips (faults.clip_owned: fused, no per-parameter norms)
        "gradient_clipping": 0.0 if owns_step(stage, precision) else cfg.optim.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "torch_autocast": {"enabled": precision == "bf16-autocast", "dtype": "torch.bfloat16"},
        "fp16": {"enabled": False},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def config_from_meta(tree: Mapping[str, Any], cls: type | None = None) -> Any:
    """A typed config rebuilt from a checkpoint's ``config`` dict, leniently: fields another megagrow version
    did not write keep their defaults, fields this version does not know are ignored. No validation."""
    if cls is None:
        cls, tree = Config, translate_legacy(tree)[0]  # a checkpoint of a megagrow before the growth sections
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in tree:
            continue
        value, tp = tree[f.name], hints[f.name]
        kwargs[f.name] = config_from_meta(value, tp) if dataclasses.is_dataclass(tp) and isinstance(value, Mapping) \
            else value
    return cls(**kwargs)
