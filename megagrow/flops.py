"""Model FLOPs of the *executed* architecture (pure functions, no torch).

Convention (PaLM appendix B / nanoGPT / torchtitan: "6·N + 12·L·d·T"): training FLOPs of a micro-batch =
forward + backward = 3 x the forward matmul FLOPs, one multiply-add = 2 FLOPs. Counted:

* per token per executed layer: ``6·(4·d² + 2·d·f)`` for the fused QKV, the attention output projection
  and the two MLP matmuls, plus ``12·d·T`` for attention (``Q·Kᵀ`` and ``A·V``). Attention is counted over
  the full ``T x T`` square for every family: exact for bidirectional BERT/ViT, the usual convention for
  causal GPT (no causal discount);
* heads, per position the output projection runs on (``ModelOutput.n_predictions``): GPT ``6·d·V``
  (tied LM head, no bias), BERT ``6·(d² + d·V)`` (MLM transform dense + tied decoder, masked positions
  only), DeiT ``6·d·C`` (each of the class and distillation heads is one prediction);
* DeiT patch embedding: the Conv2d (kernel = stride = patch) as a matmul over the patches,
  ``4·(C·p²)·d`` per patch = forward + weight gradient only, because no gradient w.r.t. the images
  is ever computed.

Not counted: embedding lookups (and their scatter-add backward), LayerNorm, softmax, GELU, dropout,
biases, residual adds, the loss. ``depth`` is the number of layers actually executed
(``len(layer_map)``): a weight-shared slot that runs twice costs twice.

Agreement with ``torch.utils.flop_counter.FlopCounterMode`` (``tests/test_flops.py``) is exact (the
counter counts exactly the matmuls listed above, with their 2x backward, and conv backward only for the
gradients it computes) provided attention runs on a path the counter sees. Counter quirks as of
torch 2.13:

* CPU: the default SDPA kernel ``aten._scaled_dot_product_flash_attention_for_cpu`` (and its backward)
  has no flop formula, so attention counts 0; under ``sdpa_kernel(SDPBackend.MATH)`` it decomposes into
  ``bmm`` s that are counted fully (causal masks included) -> exactly ``12·d·T`` per token per layer.
* GPU flash / memory-efficient / cuDNN attention: the counter charges the backward 5 matmuls
  (it includes recomputing ``Q·Kᵀ``), i.e. ``14·d·T`` per token per layer, 7/6 of this convention.
  That is hardware work, not model FLOPs; we keep 12.
"""

from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("bert", "gpt", "deit")


@dataclass(frozen=True)
class Arch:
    """The architecture a forward pass actually runs, minus its depth (that is ``len(layer_map)``)."""

    family: str
    hidden: int
    n_heads: int
    ffn: int
    vocab_size: int
    num_classes: int = 0
    patch_size: int = 0
    in_chans: int = 0
    n_prefix_tokens: int = 0  # deit: 1 (cls) or 2 (cls, dist)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"Arch.family={self.family!r}: must be one of {FAMILIES}")


def deit_seq_len(image_size: int, patch_size: int, n_prefix: int) -> int:
    """Tokens per image entering the blocks: patches plus the CLS (and distillation) tokens."""
    if image_size % patch_size:
        raise ValueError(f"image_size={image_size} is not divisible by patch_size={patch_size}")
    return (image_size // patch_size) ** 2 + n_prefix


def layer_forward_flops_per_token(arch: Arch, seq_len: int) -> int:
    """Forward FLOPs of one transformer layer for one token in a sequence of ``seq_len`` tokens."""
    d, f = arch.hidden, arch.ffn
    return 2 * (4 * d * d + 2 * d * f) + 4 * d * seq_len


def head_forward_flops_per_prediction(arch: Arch) -> int:
    """Forward FLOPs of the output head for one predicted position."""
    d = arch.hidden
    if arch.family == "gpt":
        return 2 * d * arch.vocab_size
    if arch.family == "bert":
        return 2 * (d * d + d * arch.vocab_size)
    return 2 * d * arch.num_classes


def patch_embed_forward_flops(arch: Arch, n_patches: int) -> int:
    """Forward FLOPs of the DeiT patch embedding for ``n_patches`` patches (0 for text families)."""
    if arch.family != "deit":
        return 0
    return 2 * arch.in_chans * arch.patch_size**2 * arch.hidden * n_patches


def _check(depth: int, batch_size: int, seq_len: int, n_predictions: int) -> None:
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len), ("n_predictions", n_predictions)):
        if value < 0:
            raise ValueError(f"{name}={value}: must be >= 0")
    if depth < 1:
        raise ValueError(f"depth={depth}: must be >= 1 (the length of the layer map)")


def forward_flops(arch: Arch, depth: int, batch_size: int, seq_len: int, n_predictions: int) -> int:
    """Forward matmul FLOPs of one micro-batch (see the module docstring for what is counted)."""
    _check(depth, batch_size, seq_len, n_predictions)
    tokens = batch_size * seq_len
    flops = depth * tokens * layer_forward_flops_per_token(arch, seq_len)
    flops += n_predictions * head_forward_flops_per_prediction(arch)
    n_patches = batch_size * (seq_len - arch.n_prefix_tokens)
    return flops + patch_embed_forward_flops(arch, n_patches)


def train_flops(arch: Arch, depth: int, batch_size: int, seq_len: int, n_predictions: int) -> int:
    """Training FLOPs (forward + backward) of one micro-batch.

    ``depth`` = ``len(layer_map)``; ``seq_len`` = tokens per sample entering the blocks (DeiT:
    :func:`deit_seq_len`); ``n_predictions`` = positions the output projection ran on
    (``ModelOutput.n_predictions``). Everything is 3x its forward, except the patch embedding (2x: no
    gradient w.r.t. the images).
    """
    fwd = forward_flops(arch, depth, batch_size, seq_len, n_predictions)
    patch = patch_embed_forward_flops(arch, batch_size * (seq_len - arch.n_prefix_tokens))
    return 3 * fwd - patch
