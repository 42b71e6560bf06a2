"""The model section of the configuration: one dataclass for the three families."""

from __future__ import annotations

from dataclasses import dataclass, field

from megagrow.flops import FAMILIES, Arch
from megagrow.models.sizes import SIZES

INIT_HF = "hf:"  # model.init_from prefix of a Hugging Face model directory


@dataclass
class ModelConfig:
    """Shape and regularisation of a BERT, GPT or DeiT model; ``validate()`` explains what is wrong."""

    family: str = field(default="gpt", metadata={"help": "model family: bert (MLM), gpt (causal LM) or deit"})
    size: str | None = field(
        default=None,
        metadata={"help": "named preset from megagrow.models.sizes.SIZES, applied before explicit fields"},
    )
    n_layers: int = field(default=12, metadata={"help": "K = number of weight slots (transformer blocks)"})
    hidden: int = field(default=256, metadata={"help": "hidden (residual) width d"})
    n_heads: int = field(default=4, metadata={"help": "attention heads; must divide hidden"})
    ffn: int = field(default=0, metadata={"help": "MLP inner width f; 0 means 4 * hidden"})
    vocab_size: int = field(
        default=0, metadata={"help": "token vocabulary (bert/gpt); 0 = take it from the data's tokenizer"}
    )
    max_seq_len: int = field(default=128, metadata={"help": "size of the position table (bert/gpt)"})
    type_vocab_size: int = field(default=2, metadata={"help": "number of BERT token types (segments)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on embeddings and residual branches"})
    attn_dropout: float = field(default=0.0, metadata={"help": "dropout on attention probabilities"})
    bert_pre_ln: bool = field(
        default=False,
        metadata={"help": "bert: pre-LN blocks and a LayerNorm after the last block (as Cramming trains BERT: stable "
                  "at higher LRs, leaves MLM's early plateau sooner) instead of the original post-LN; gpt and deit "
                  "are always pre-LN"},
    )
    attn_local_bias: float = field(
        default=0.0,
        metadata={"help": "bert: add -m * |i - j| to every head's attention logits (one slope m for all heads, so "
                  "width and depth growth keep it; ALiBi's bidirectional form with a single slope). A scratch BERT "
                  "attends uniformly until it learns positional attention, MLM's early plateau; the bias makes "
                  "attention local from the first step. 0 = off (the original BERT)"},
    )
    ln_eps: float = field(default=1e-5, metadata={"help": "LayerNorm epsilon (BERT presets use 1e-12)"})
    init_std: float = field(default=0.02, metadata={"help": "std of the normal init of weights/embeddings"})
    image_size: int = field(default=32, metadata={"help": "deit: input image side in pixels (square)"})
    patch_size: int = field(
        default=4, metadata={"help": "deit: patch side in pixels; must divide image_size"}
    )
    in_chans: int = field(default=3, metadata={"help": "deit: input image channels"})
    num_classes: int = field(default=10, metadata={"help": "deit: number of classes"})
    distill_token: bool = field(
        default=True, metadata={"help": "deit: add the distillation token and its head (DeiT); off = ViT"}
    )
    init_from: str = field(
        default="",
        metadata={"help": "start weights instead of a random init: 'hf:DIR' = a local Hugging Face model directory "
                  "(config.json + model.safetensors, e.g. from `megagrow export`) of this family whose architecture "
                  "is the plan's start model (the small model of bert2bert/ligo/msg/stacking plans, the model "
                  "itself for scratch); any mismatch is refused, listing every one. Empty = random init. A "
                  "checkpoint of the run (resume) takes precedence"},
    )

    @property
    def ffn_dim(self) -> int:
        """The MLP inner width with 0 resolved to 4 * hidden."""
        return self.ffn or 4 * self.hidden

    def arch(self) -> Arch:
        """The architecture for FLOPs accounting (the executed depth is the layer map's length)."""
        deit = self.family == "deit"
        return Arch(
            family=self.family,
            hidden=self.hidden,
            n_heads=self.n_heads,
            ffn=self.ffn_dim,
            vocab_size=0 if deit else self.vocab_size,
            num_classes=self.num_classes if deit else 0,
            patch_size=self.patch_size if deit else 0,
            in_chans=self.in_chans if deit else 0,
            n_prefix_tokens=self.n_prefix_tokens if deit else 0,
        )

    @property
    def n_prefix_tokens(self) -> int:
        """deit: tokens prepended to the patches (CLS, plus the distillation token if enabled)."""
        return 2 if self.distill_token else 1

    def validate(self) -> list[str]:
        """Human-readable problems, each naming the field, its value and what is allowed."""
        problems: list[str] = []
        if self.family not in FAMILIES:
            problems.append(f"model.family={self.family!r}: must be one of {', '.join(FAMILIES)}")
        if self.size is not None and self.size not in SIZES:
            problems.append(f"model.size={self.size!r}: unknown preset; known: {', '.join(sorted(SIZES))}")
        for name in ("n_layers", "hidden", "n_heads", "max_seq_len"):
            value = getattr(self, name)
            if value < 1:
                problems.append(f"model.{name}={value}: must be a positive integer")
        for name in ("ffn", "vocab_size"):
            value = getattr(self, name)
            if value < 0:
                problems.append(f"model.{name}={value}: must be >= 0 (0 = automatic)")
        if self.hidden >= 1 and self.n_heads >= 1 and self.hidden % self.n_heads:
            problems.append(f"model.hidden={self.hidden}: must be divisible by model.n_heads={self.n_heads}")
        if self.family == "bert" and self.type_vocab_size < 1:
            problems.append(f"model.type_vocab_size={self.type_vocab_size}: must be >= 1 for bert")
        for name in ("dropout", "attn_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                problems.append(f"model.{name}={value}: must be in [0, 1)")
        for name in ("ln_eps", "init_std"):
            value = getattr(self, name)
            if not value > 0.0:
                problems.append(f"model.{name}={value}: must be > 0")
        if self.attn_local_bias and self.family != "bert":
            problems.append(f"model.attn_local_bias={self.attn_local_bias}: only for family bert (got "
                            f"model.family={self.family!r})")
        if self.attn_local_bias < 0:
            problems.append(f"model.attn_local_bias={self.attn_local_bias}: must be >= 0 (0 = off)")
        if self.bert_pre_ln and self.family != "bert":
            problems.append(f"model.bert_pre_ln=true: only for family bert (model.family={self.family!r} is always "
                            "pre-LN)")
        if self.family == "deit":
            problems.extend(self._validate_deit())
        if self.init_from and (not self.init_from.startswith(INIT_HF) or not self.init_from[len(INIT_HF):].strip()):
            problems.append(f"model.init_from={self.init_from!r}: expected {INIT_HF}DIR (a local Hugging Face model "
                            "directory) or empty (random init)")
        return problems

    def _validate_deit(self) -> list[str]:
        problems: list[str] = []
        for name in ("image_size", "patch_size", "in_chans", "num_classes"):
            value = getattr(self, name)
            if value < 1:
                problems.append(f"model.{name}={value}: must be a positive integer")
        if self.image_size >= 1 and self.patch_size >= 1 and self.image_size % self.patch_size:
            problems.append(
                f"model.patch_size={self.patch_size}: must divide model.image_size={self.image_size}"
            )
        return problems
