"""GPT-2 style causal language model (pre-LN blocks, learned positions, tied LM head without bias)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from megagrow.models.core import MegagrowModel, ModelOutput, TextEmbedding, require
from megagrow.models.masks import GrowthMasks, hidden_ln
from megagrow.models.spec import ModelConfig


class GPTModel(MegagrowModel):
    """Batch: ``input_ids`` [B,T] and ``labels`` [B,T], already shifted (position t predicts labels[t];
    -100 = ignore). The LM head runs on all B*T positions; ``logits`` are [B, T, V], or empty with
    ``loss_chunk > 0`` (head and loss chunked, see :func:`~megagrow.models.core.head_loss`)."""

    compiles_head = True  # every position is predicted: the head's shapes are the batch's, fixed

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.embed = TextEmbedding(cfg, token_types=False, layer_norm=False)
        self.blocks = self._make_blocks(pre_ln=True, causal=True, gelu_approximate="tanh")
        self.final_ln = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)
        self._init_weights(scale_residual=True)

    def forward(
        self, batch: dict[str, torch.Tensor], layer_map: Sequence[int], masks: GrowthMasks | None = None
    ) -> ModelOutput:
        require(batch, "gpt", "input_ids", "labels")
        if masks is None:
            x = self.run_blocks(self.embed(batch["input_ids"]), layer_map)
            h = self.final_ln(x)
        else:
            masks = masks.to(batch["input_ids"].device)
            x = self.run_blocks(self.embed(batch["input_ids"], masks=masks), layer_map, masks=masks)
            h = hidden_ln(self.final_ln, x, masks)
        loss, logits = self.head_loss_fn(h, self.embed.tokens.weight, batch["labels"], self.loss_chunk)
        return ModelOutput(loss=loss, logits=logits, n_predictions=h.shape[0] * h.shape[1])
