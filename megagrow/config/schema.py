"""The config's schema: one typed dataclass per section, :class:`Config` their tree, and :class:`ConfigError`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from megagrow.fields import doc
from megagrow.growth.config import GrowthConfig
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
    full_state: Literal["auto", "replicated", "rank0", "streamed"] = doc(
        "where the training state lives while a transition maps it (and while a checkpoint is loaded): "
        "'replicated' = whole on every rank (no extra communication); 'rank0' = whole on rank 0 only, which applies "
        "the operator and broadcasts the result one tensor at a time, while under ZeRO-3 the new model is built "
        "already partitioned (deepspeed.zero.Init), so no other rank ever holds more than one full tensor; "
        "'streamed' (ZeRO-3 only) = never whole anywhere: the operator is traced, then each new tensor is computed "
        "from only the sources it needs (elementwise ones from each rank's own partitions, the others gathered one "
        "at a time) and written into the new partitions, bit-identical to rank0 (checkpoint loads go through rank 0); "
        "auto = streamed under ZeRO-3, else replicated. Learned operators (LiGO) always use replicated", "auto")
    bucket_elements: int = doc(
        "elements per DeepSpeed communication bucket: reduce_bucket_size and allgather_bucket_size, and under ZeRO-3 "
        "stage3_prefetch_bucket_size, with stage3_max_live_parameters and stage3_max_reuse_distance at 4x; 0 = "
        "DeepSpeed's defaults (5e8, 5e7 and 1e9 elements: a 2 GB fp32 reduce buffer and up to a billion live "
        "parameters per rank). Smaller buckets cut a rank's steady-state memory at the price of more, smaller "
        "collectives", 0)
    stream_spill: Literal["disk", "memory"] = doc(
        "full_state=streamed: where each rank keeps its partitions of the old state while the new engine is built "
        "and filled: 'disk' = an unlinked temporary file in the run directory (.transition/), read back one tensor "
        "at a time, so a transition needs no more memory than the larger model's training plus the sources of one "
        "new tensor; 'memory' = in RAM (faster, but the old partitions and the new engine coexist)", "disk")
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

