"""The transformer core shared by the three families: attention, MLP, block and the layer registry.

A model holds K weight slots (``blocks``) and runs an explicit *layer map*, a sequence of slot indices
of any length: ``[0, 1, ..., K-1]`` is the plain model, ``[0, 0, 1]`` runs slot 0 twice (weight sharing;
autograd sums the gradients of both uses into slot 0), ``[0, 1]`` runs only the first two slots.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from megagrow.flops import Arch
from megagrow.models.chunked_loss import linear_cross_entropy
from megagrow.models.masks import GrowthMasks, apply_mask, hidden_ln
from megagrow.models.spec import ModelConfig

IGNORE_INDEX = -100


class ModelOutput(NamedTuple):
    """What every family's forward returns. A NamedTuple, not a dataclass: DeepSpeed ZeRO-3 finds the
    tensors in a module's outputs only inside tuples/lists/dicts, and needs them for its backward hooks."""

    loss: torch.Tensor  # scalar fp32, mean over the predicted (non-ignored) positions
    # the head outputs actually computed; EMPTY (numel 0) when the LM loss is chunked (``model.loss_chunk > 0``, set
    # from train.loss_chunk by the engine builder): the full logits are then never materialised. Callers that need
    # logits (megagrow.use, HF export) build the model without it (loss_chunk = 0, the default)
    logits: torch.Tensor
    n_predictions: int  # positions the output projection ran on (FLOPs accounting)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused QKV projection (rows: Q, then K, then V) and SDPA."""

    def __init__(self, hidden: int, n_heads: int, attn_dropout: float, causal: bool) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.attn_dropout = attn_dropout
        self.causal = causal
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, head_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.attn_dropout if self.training else 0.0,
            is_causal=self.causal,
        )
        if head_mask is not None:  # [b, H, t, hs]: each head's output times its mask entry
            y = y * head_mask.to(y.dtype)[None, :, None, None]
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    """fc_in -> GELU -> fc_out."""

    def __init__(self, hidden: int, ffn: int, gelu_approximate: str) -> None:
        super().__init__()
        self.fc_in = nn.Linear(hidden, ffn)
        self.fc_out = nn.Linear(ffn, hidden)
        self.gelu_approximate = gelu_approximate

    def forward(self, x: torch.Tensor, ffn_mask: torch.Tensor | None = None) -> torch.Tensor:
        if ffn_mask is None:
            return self.fc_out(F.gelu(self.fc_in(x), approximate=self.gelu_approximate))
        return self.fc_out(apply_mask(F.gelu(self.fc_in(x), approximate=self.gelu_approximate), ffn_mask))


class Block(nn.Module):
    """One transformer layer (= one weight slot).

    Pre-LN (GPT, DeiT): ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``.
    Post-LN (BERT): ``ln_1(x + attn(x))`` then ``ln_2(x + mlp(x))``.
    """

    def __init__(self, cfg: ModelConfig, pre_ln: bool, causal: bool, gelu_approximate: str) -> None:
        super().__init__()
        self.pre_ln = pre_ln
        self.ln_1 = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)
        self.attn = SelfAttention(cfg.hidden, cfg.n_heads, cfg.attn_dropout, causal)
        self.ln_2 = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)
        self.mlp = MLP(cfg.hidden, cfg.ffn_dim, gelu_approximate)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, masks: GrowthMasks | None = None
    ) -> torch.Tensor:
        if masks is not None:
            return self._masked_forward(x, attn_mask, masks)
        if self.pre_ln:
            x = x + self.dropout(self.attn(self.ln_1(x), attn_mask))
            return x + self.dropout(self.mlp(self.ln_2(x)))
        x = self.ln_1(x + self.dropout(self.attn(x, attn_mask)))
        return self.ln_2(x + self.dropout(self.mlp(x)))

    def _masked_forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, m: GrowthMasks) -> torch.Tensor:
        """The block under growth masks (see :mod:`megagrow.models.masks`; the layer factor is applied by
        :meth:`MegagrowModel.run_blocks`)."""
        if self.pre_ln:
            x = x + self.dropout(self.attn(hidden_ln(self.ln_1, x, m), attn_mask, m.heads))
            return x + self.dropout(self.mlp(hidden_ln(self.ln_2, x, m), m.ffn))
        x = hidden_ln(self.ln_1, x + self.dropout(self.attn(x, attn_mask, m.heads)), m)
        return hidden_ln(self.ln_2, x + self.dropout(self.mlp(x, m.ffn)), m)


class TextEmbedding(nn.Module):
    """Token + learned position (+ token-type) embeddings, optionally followed by LayerNorm; then dropout."""

    def __init__(self, cfg: ModelConfig, token_types: bool, layer_norm: bool) -> None:
        super().__init__()
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.positions = nn.Embedding(cfg.max_seq_len, cfg.hidden)
        self.token_types = nn.Embedding(cfg.type_vocab_size, cfg.hidden) if token_types else None
        self.ln = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps) if layer_norm else None
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None, masks: GrowthMasks | None = None
    ) -> torch.Tensor:
        t = input_ids.shape[1]
        if t > self.positions.num_embeddings:
            raise ValueError(f"sequence length {t} exceeds model.max_seq_len={self.positions.num_embeddings}")
        x = self.tokens(input_ids) + self.positions(torch.arange(t, device=input_ids.device))
        if self.token_types is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_types(token_type_ids)
        if masks is not None and masks.hidden is not None:  # the masked LN's output is already x * mask
            return self.dropout(apply_mask(x, masks.hidden) if self.ln is None else hidden_ln(self.ln, x, masks))
        if self.ln is not None:
            x = self.ln(x)
        return self.dropout(x)


def check_layer_map(layer_map: Sequence[int], n_slots: int) -> list[int]:
    """The layer map as a list of ints, or a ValueError saying what is wrong with it."""
    if isinstance(layer_map, str | bytes) or not isinstance(layer_map, Sequence):
        raise ValueError(f"layer_map must be a sequence of slot indices, got {type(layer_map).__name__}")
    if len(layer_map) == 0:
        raise ValueError("layer_map is empty: it must name at least one slot to run")
    checked: list[int] = []
    for pos, slot in enumerate(layer_map):
        if isinstance(slot, bool):
            raise ValueError(f"layer_map[{pos}]={slot!r} is not an integer slot index")
        try:
            k = operator.index(slot)
        except TypeError:
            raise ValueError(f"layer_map[{pos}]={slot!r} is not an integer slot index") from None
        if not 0 <= k < n_slots:
            raise ValueError(
                f"layer_map[{pos}]={k} is out of range: "
                f"this model has {n_slots} slots (valid 0..{n_slots - 1})"
            )
        checked.append(k)
    return checked


def require(batch: dict[str, torch.Tensor], family: str, *keys: str) -> None:
    """Raise a KeyError naming the batch keys a family needs but did not get."""
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"{family} batch is missing {missing}; got keys {sorted(batch)}")


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """fp32 cross-entropy averaged over the labels != -100 (0, still attached to the graph, if none)."""
    logits = logits.float().reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1)
    total = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (labels != IGNORE_INDEX).sum().clamp(min=1)


def head_loss(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk: int, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, logits)`` of the output projection ``F.linear(hidden, weight, bias)`` (``hidden`` [..., d], labels
    [...]) and :func:`cross_entropy`. With ``chunk > 0`` the projection and the loss run ``chunk`` positions at a time
    (:func:`~megagrow.models.chunked_loss.linear_cross_entropy`, the same loss and gradients) and ``logits`` is an
    empty tensor: the full logits are never materialised."""
    if chunk > 0:
        loss = linear_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), weight, labels.reshape(-1), chunk,
                                    IGNORE_INDEX, bias)
        return loss, hidden.new_empty(0)
    logits = F.linear(hidden, weight, bias)
    return cross_entropy(logits, labels), logits


class MegagrowModel(nn.Module):
    """Base class: K weight slots in ``self.blocks`` executed along a layer map; heads in subclasses.

    Subclasses build their modules in parameter order (embeddings, ``blocks`` via :meth:`_make_blocks`,
    heads), then call :meth:`_init_weights`.
    """

    blocks: nn.ModuleList

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # train.activation_checkpointing: while training with autograd on, each block's forward is recomputed in the
        # backward pass instead of keeping its intermediate activations (set by the engine builder)
        self.activation_checkpointing = False
        self.loss_chunk = 0  # train.loss_chunk: > 0 = LM head + loss N positions at a time, logits not returned
        # the output head + loss as the family calls it: head_loss, or its compiled version (train.compile, for
        # families whose head has static shapes: compiles_head)
        self.head_loss_fn = head_loss

    compiles_head = False  # train.compile also compiles head_loss_fn (its shapes do not change between batches)

    def _make_blocks(self, pre_ln: bool, causal: bool, gelu_approximate: str) -> nn.ModuleList:
        return nn.ModuleList(
            Block(self.cfg, pre_ln, causal, gelu_approximate) for _ in range(self.cfg.n_layers)
        )

    @property
    def n_slots(self) -> int:
        """K, the number of weight slots."""
        return len(self.blocks)

    def full_layer_map(self) -> list[int]:
        """The identity layer map ``[0, 1, ..., K-1]``."""
        return list(range(self.n_slots))

    def arch(self) -> Arch:
        """The architecture for FLOPs accounting (depth is the layer map's length)."""
        return self.cfg.arch()

    def run_blocks(
        self,
        x: torch.Tensor,
        layer_map: Sequence[int],
        attn_mask: torch.Tensor | None = None,
        masks: GrowthMasks | None = None,
    ) -> torch.Tensor:
        """Apply the slots named by ``layer_map`` in order; with ``masks``, a slot of layer factor
        ``c != 1`` computes ``c * Block(x) + (1 - c) * x``."""
        run = self._checkpointed if self.activation_checkpointing and self.training and torch.is_grad_enabled() \
            else self._direct
        if masks is None:
            for k in check_layer_map(layer_map, self.n_slots):
                x = run(self.blocks[k], x, attn_mask)
            return x
        if masks.layers is not None and len(masks.layers) != self.n_slots:
            raise ValueError(f"masks.layers has {len(masks.layers)} factors, this model has {self.n_slots} slots")
        for k in check_layer_map(layer_map, self.n_slots):
            y = run(self.blocks[k], x, attn_mask, masks)
            c = masks.layer_factor(k)
            x = y if c == 1.0 else c * y + (1.0 - c) * x
        return x

    @staticmethod
    def _direct(block: nn.Module, *args: object) -> torch.Tensor:
        return block(*args)

    @staticmethod
    def _checkpointed(block: nn.Module, *args: object) -> torch.Tensor:
        # non-reentrant: works with inputs that need no grad, keyword-free masks, torch.compile and ZeRO-3's module
        # hooks (the recomputation calls the module again); preserve_rng_state keeps dropout's masks identical
        return torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False, preserve_rng_state=True)

    def _init_weights(self, scale_residual: bool) -> None:
        """normal(0, init_std) for matmul weights and embeddings, zero biases, LayerNorm (1, 0).

        With ``scale_residual`` (GPT-2) the residual output projections (attn.proj, mlp.fc_out) use
        ``init_std / sqrt(2 * n_layers)``.
        """
        std = self.cfg.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Conv2d | nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if scale_residual:
            residual_std = std / math.sqrt(2 * self.cfg.n_layers)
            for block in self.blocks:
                nn.init.normal_(block.attn.proj.weight, mean=0.0, std=residual_std)
                nn.init.normal_(block.mlp.fc_out.weight, mean=0.0, std=residual_std)
