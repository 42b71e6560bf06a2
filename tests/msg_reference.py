"""MSG's reference forward: a transformer written from MSG's masked equations, parameter by parameter, that the
tests compare the model classes (which take the masks as ``forward(batch, layer_map, masks)``) and the grown states
against. Test-only: the trainer runs the model classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from megagrow.growth.ops.depth import split_block_name
from megagrow.growth.ops.msg import MsgMasks
from megagrow.models.bert import attention_bias
from megagrow.models.dims import FAMILIES
from megagrow.models.masks import masked_layernorm as msg_layernorm


def _mul(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask.to(x.dtype)


def msg_block_forward(
    x: torch.Tensor,
    p: dict[str, torch.Tensor],
    *,
    n_heads: int,
    pre_ln: bool,
    eps: float,
    gelu_approximate: str = "none",
    causal: bool = False,
    attn_mask: torch.Tensor | None = None,
    hidden_mask: torch.Tensor | None = None,
    head_mask: torch.Tensor | None = None,
    ffn_mask: torch.Tensor | None = None,
    layer_mask: float = 1.0,
) -> torch.Tensor:
    """One masked block (``p``: the block's parameters by suffix, e.g. ``"attn.qkv.weight"``); with every
    mask ``None`` and ``layer_mask=1`` it is :class:`megagrow.models.core.Block` without dropout."""

    def ln(h: torch.Tensor, which: str) -> torch.Tensor:
        return _mul(msg_layernorm(h, p[f"{which}.weight"], p[f"{which}.bias"], hidden_mask, eps), hidden_mask)

    def attn(h: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape
        qkv = F.linear(h, p["attn.qkv.weight"], p["attn.qkv.bias"])
        q, k, v = qkv.view(b, t, 3, n_heads, d // n_heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal)  # [b, H, t, hs]
        if head_mask is not None:
            y = y * head_mask.to(y.dtype)[None, :, None, None]
        return F.linear(y.transpose(1, 2).reshape(b, t, d), p["attn.proj.weight"], p["attn.proj.bias"])

    def mlp(h: torch.Tensor) -> torch.Tensor:
        a = F.gelu(F.linear(h, p["mlp.fc_in.weight"], p["mlp.fc_in.bias"]), approximate=gelu_approximate)
        return F.linear(_mul(a, ffn_mask), p["mlp.fc_out.weight"], p["mlp.fc_out.bias"])

    if pre_ln:
        y = x + attn(ln(x, "ln_1"))
        y = y + mlp(ln(y, "ln_2"))
    else:
        y = ln(x + attn(x), "ln_1")
        y = ln(y + mlp(y), "ln_2")
    if layer_mask == 1.0:
        return y
    return layer_mask * y + (1.0 - layer_mask) * x


def msg_forward(
    params: dict[str, torch.Tensor],
    family: str,
    n_heads: int,
    batch: dict[str, torch.Tensor],
    masks: MsgMasks | None = None,
    c: float = 1.0,
    eps: float = 1e-5,
    layer_map: list[int] | None = None,
    local_bias: float = 0.0,
) -> torch.Tensor:
    """Reference masked forward of a whole BERT / GPT / DeiT model from a parameter dict; returns the
    logits exactly as the model does (BERT: masked positions only; DeiT: the average of both heads).
    ``masks=None``: the plain model (no masks). ``local_bias``: BERT's ``model.attn_local_bias``."""
    hm = masks.hidden_mask(c) if masks is not None else None
    km = masks.head_mask(c) if masks is not None else None
    fm = masks.ffn_mask(c) if masks is not None else None
    n_slots = len({p[0] for p in (split_block_name(n) for n in params) if p is not None})
    lm = masks.layer_mask(c) if masks is not None else [1.0] * n_slots
    layer_map = list(range(n_slots)) if layer_map is None else layer_map
    attn_mask = None
    if family in ("bert", "gpt"):
        ids = batch["input_ids"]
        t = ids.shape[1]
        x = F.embedding(ids, params["embed.tokens.weight"]) + params["embed.positions.weight"][:t]
        if family == "bert":
            tt = batch.get("token_type_ids")
            tt = torch.zeros_like(ids) if tt is None else tt
            x = x + F.embedding(tt, params["embed.token_types.weight"])
            x = _mul(msg_layernorm(x, params["embed.ln.weight"], params["embed.ln.bias"], hm, eps), hm)
            attn_mask = attention_bias(batch.get("attention_mask"), t, local_bias, x)
        else:
            x = _mul(x, hm)
    elif family == "deit":
        w = params["patch_embed.proj.weight"]
        x = F.conv2d(batch["images"].to(w.dtype), w, params["patch_embed.proj.bias"], stride=w.shape[-1])
        x = x.flatten(2).transpose(1, 2)
        prefix = [params["cls_token"]] + ([params["dist_token"]] if "dist_token" in params else [])
        x = torch.cat([q.expand(x.shape[0], -1, -1) for q in prefix] + [x], dim=1) + params["pos_embed"]
        x = _mul(x, hm)
    else:
        raise ValueError(f"family={family!r}: must be one of {', '.join(FAMILIES)}")
    pre_ln = family != "bert" or "final_ln.weight" in params  # a BERT with a final LayerNorm is pre-LN
    for k in layer_map:
        block = {
            s: v for n, v in params.items() if (q := split_block_name(n)) is not None and q[0] == k for s in (q[1],)
        }
        x = msg_block_forward(
            x,
            block,
            n_heads=n_heads,
            pre_ln=pre_ln,
            eps=eps,
            gelu_approximate="tanh" if family == "gpt" else "none",
            causal=family == "gpt",
            attn_mask=attn_mask,
            hidden_mask=hm,
            head_mask=km,
            ffn_mask=fm,
            layer_mask=lm[k],
        )
    if family == "bert":
        if pre_ln:
            x = _mul(msg_layernorm(x, params["final_ln.weight"], params["final_ln.bias"], hm, eps), hm)
        h = x[batch["labels"] != -100]
        h = F.gelu(F.linear(h, params["mlm.dense.weight"], params["mlm.dense.bias"]))
        h = _mul(msg_layernorm(h, params["mlm.ln.weight"], params["mlm.ln.bias"], hm, eps), hm)
        return F.linear(h, params["embed.tokens.weight"], params["mlm.bias"])
    x = _mul(msg_layernorm(x, params["final_ln.weight"], params["final_ln.bias"], hm, eps), hm)
    if family == "gpt":
        return F.linear(x, params["embed.tokens.weight"])
    logits = F.linear(x[:, 0], params["head.weight"], params["head.bias"])
    if "head_dist.weight" not in params:
        return logits
    return (logits + F.linear(x[:, 1], params["head_dist.weight"], params["head_dist.bias"])) / 2

