"""BERT for masked-language-model pretraining (post-LN blocks, MLM head on the masked positions only).

With ``model.bert_pre_ln`` the blocks are pre-LN and a ``final_ln`` follows the last one (Cramming's recipe).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from megagrow.models.core import (
    IGNORE_INDEX,
    MegagrowModel,
    ModelOutput,
    TextEmbedding,
    head_loss,
    require,
)
from megagrow.models.masks import GrowthMasks, hidden_ln
from megagrow.models.spec import ModelConfig


def attention_bias(
    attention_mask: torch.Tensor | None, t: int, local_bias: float, like: torch.Tensor
) -> torch.Tensor | None:
    """The ``attn_mask`` of every block: the padding mask ``[B, 1, 1, T]`` (bool, True = attend), or with
    ``local_bias`` m the float bias ``-m * |i - j|`` ``[1 or B, 1, T, T]`` with padded keys at -inf."""
    keep = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
    if not local_bias:
        return keep
    pos = torch.arange(t, device=like.device)
    bias = ((pos[None, :] - pos[:, None]).abs().to(torch.float32) * -local_bias)[None, None]
    if keep is not None:
        bias = bias.masked_fill(~keep, float("-inf"))
    dtype = torch.get_autocast_dtype(like.device.type) if torch.is_autocast_enabled(like.device.type) else like.dtype
    return bias.to(dtype)


class MlmHead(nn.Module):
    """dense(d, d) -> GELU -> LayerNorm -> decoder tied to the token embedding, plus a vocabulary bias."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden, cfg.hidden)
        self.ln = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def transform(self, h: torch.Tensor, masks: GrowthMasks | None = None) -> torch.Tensor:
        """dense -> GELU -> LayerNorm: the decoder's input."""
        return hidden_ln(self.ln, F.gelu(self.dense(h)), masks)

    def forward(
        self, h: torch.Tensor, decoder_weight: torch.Tensor, masks: GrowthMasks | None = None
    ) -> torch.Tensor:
        return F.linear(self.transform(h, masks), decoder_weight, self.bias)


class BertModel(MegagrowModel):
    """Batch: ``input_ids`` [B,T], ``labels`` [B,T] (-100 on unmasked positions), optional
    ``token_type_ids`` [B,T] (default zeros) and ``attention_mask`` [B,T] (1 keep, 0 pad).

    ``logits`` are [M, V] for the M masked positions (row order = ``labels != -100`` in row-major order), or
    empty with ``loss_chunk > 0`` (decoder and loss chunked, see :func:`~megagrow.models.core.head_loss`).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.embed = TextEmbedding(cfg, token_types=True, layer_norm=True)
        self.blocks = self._make_blocks(pre_ln=cfg.bert_pre_ln, causal=False, gelu_approximate="none")
        self.final_ln = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps) if cfg.bert_pre_ln else None
        self.mlm = MlmHead(cfg)
        self._init_weights(scale_residual=cfg.bert_pre_ln)

    def forward(
        self, batch: dict[str, torch.Tensor], layer_map: Sequence[int], masks: GrowthMasks | None = None
    ) -> ModelOutput:
        require(batch, "bert", "input_ids", "labels")
        if masks is not None:
            masks = masks.to(batch["input_ids"].device)
        x = self.embed(batch["input_ids"], batch.get("token_type_ids"), masks)
        attn_mask = attention_bias(batch.get("attention_mask"), batch["input_ids"].shape[1],
                                   self.cfg.attn_local_bias, x)
        x = self.run_blocks(x, layer_map, attn_mask, masks)
        if self.final_ln is not None:
            x = hidden_ln(self.final_ln, x, masks)
        labels = batch["labels"]
        masked = labels != IGNORE_INDEX
        h = self.mlm.transform(x[masked], masks)
        loss, logits = head_loss(h, self.embed.tokens.weight, labels[masked], self.loss_chunk, self.mlm.bias)
        return ModelOutput(loss=loss, logits=logits, n_predictions=h.shape[0])
