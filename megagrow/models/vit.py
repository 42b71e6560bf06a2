"""DeiT / ViT image classifier (patch embedding, CLS + distillation tokens, pre-LN blocks, two heads)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from megagrow.models.core import MegagrowModel, ModelOutput, require
from megagrow.models.masks import GrowthMasks, apply_mask, hidden_ln
from megagrow.models.spec import ModelConfig


class PatchEmbed(nn.Module):
    """Non-overlapping patches projected to the hidden width: Conv2d with kernel = stride = patch."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.hidden, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images.to(self.proj.weight.dtype)).flatten(2).transpose(1, 2)  # [B, P, d]


class DeiTModel(MegagrowModel):
    """Batch: ``images`` [B,C,H,W] float and ``labels`` [B] long. ``logits`` are [B, num_classes].

    With ``distill_token`` (DeiT) both the class head (on CLS) and the distillation head (on the
    distillation token) are trained; without it this is a plain ViT with one head.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        n_patches = (cfg.image_size // cfg.patch_size) ** 2
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.empty(1, 1, cfg.hidden))
        self.dist_token = nn.Parameter(torch.empty(1, 1, cfg.hidden)) if cfg.distill_token else None
        self.pos_embed = nn.Parameter(torch.empty(1, n_patches + cfg.n_prefix_tokens, cfg.hidden))
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = self._make_blocks(pre_ln=True, causal=False, gelu_approximate="none")
        self.final_ln = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)
        self.head = nn.Linear(cfg.hidden, cfg.num_classes)
        self.head_dist = nn.Linear(cfg.hidden, cfg.num_classes) if cfg.distill_token else None
        self._init_weights(scale_residual=False)
        for p in (self.cls_token, self.dist_token, self.pos_embed):
            if p is not None:
                nn.init.normal_(p, mean=0.0, std=cfg.init_std)

    def forward(
        self, batch: dict[str, torch.Tensor], layer_map: Sequence[int], masks: GrowthMasks | None = None
    ) -> ModelOutput:
        require(batch, "deit", "images", "labels")
        x = self.patch_embed(batch["images"])
        prefix = [self.cls_token] if self.dist_token is None else [self.cls_token, self.dist_token]
        x = torch.cat([p.expand(x.shape[0], -1, -1) for p in prefix] + [x], dim=1)
        if masks is None:
            x = self.run_blocks(self.dropout(x + self.pos_embed), layer_map)
            x = self.final_ln(x)
        else:
            masks = masks.to(x.device)
            x = self.run_blocks(self.dropout(apply_mask(x + self.pos_embed, masks.hidden)), layer_map, masks=masks)
            x = hidden_ln(self.final_ln, x, masks)
        # Mixup/cutmix batches carry soft targets (rows summing to 1); cross_entropy takes either.
        labels = batch.get("labels_soft", batch["labels"])
        logits = self.head(x[:, 0])
        if self.head_dist is None:
            return ModelOutput(
                loss=F.cross_entropy(logits.float(), labels), logits=logits, n_predictions=len(x)
            )
        # No teacher yet: both heads learn the labels and the loss is their average. DeiT's hard
        # distillation (head_dist against the teacher's argmax) comes with the data/teacher issue.
        logits_dist = self.head_dist(x[:, 1])
        loss = (F.cross_entropy(logits.float(), labels) + F.cross_entropy(logits_dist.float(), labels)) / 2
        return ModelOutput(loss=loss, logits=(logits + logits_dist) / 2, n_predictions=2 * len(x))
