"""megagrow parameters <-> Hugging Face ``transformers`` state dicts and ``config.json`` (pure functions).

One table of :class:`Link` s per family names, for every megagrow parameter, the Hugging Face tensor(s) it
becomes and how (``copy``; ``transpose`` for GPT-2's ``Conv1D`` weights, stored ``in x out``; ``qkv`` for our
fused attention projection, split into ``query``/``key``/``value`` along dim 0). Export and import both read the
table, so one is the inverse of the other: the conversions only copy, transpose, split and concatenate, and
``from_hf(to_hf(p)) == p`` bit for bit. The names are those of ``docs/parameter-names.md``:

* ``bert`` -> ``BertForMaskedLM`` (post-LN, exact GELU, tied decoder);
* ``gpt`` -> ``GPT2LMHeadModel`` (pre-LN, tanh GELU ``gelu_new``, tied LM head without bias);
* ``deit`` -> ``DeiTForImageClassificationWithTeacher`` with ``distill_token``, else ``ViTForImageClassification``.

Slots vs layers: an export runs a *layer map*; Hugging Face layer ``i`` is a copy of slot ``layer_map[i]``. An
import gives the identity map (Hugging Face layer ``i`` = slot ``i``).

Nothing here reads or writes files; :mod:`megagrow.interchange.hf_io` does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import torch

from megagrow.models.core import check_layer_map
from megagrow.models.spec import ModelConfig

How = Literal["copy", "transpose", "qkv"]

#: ``model_type`` of the exported config.json, by megagrow family (deit: with / without distillation token).
ARCHITECTURES = {"bert": "BertForMaskedLM", "gpt": "GPT2LMHeadModel", "deit": "DeiTForImageClassificationWithTeacher",
                 "vit": "ViTForImageClassification"}
MODEL_TYPES = {"bert": "bert", "gpt": "gpt2", "deit": "deit", "vit": "vit"}
#: GELU names of transformers' ACT2FN that compute what our blocks compute.
_GPT_ACTS = ("gelu_new", "gelu_pytorch_tanh")
_EXACT_GELU = ("gelu",)


class HFConversionError(ValueError):
    """A Hugging Face checkpoint (or a megagrow state) that does not fit; ``problems`` lists every one."""

    SHOWN = 3  # tensor problems printed per kind; the rest are counted (12 -> 1 layers listed 134 tensors)

    def __init__(self, head: str, problems: Sequence[str]):
        self.problems = list(problems)  # all of them, for callers and tests
        super().__init__("\n".join([head, *(f"  - {p}" for p in _summarized(self.problems, self.SHOWN))]))


def _summarized(problems: Sequence[str], shown: int) -> list[str]:
    """Every config problem; of each kind of tensor problem (missing, unexpected, wrong shape) the first ``shown``
    and a count of the rest."""
    def kind(p: str) -> str:
        if p.startswith(("missing tensor", "unexpected tensor")):
            return p.split(" ", 1)[0] + " tensors"
        return "tensors of the wrong shape" if ": shape " in p else ""

    out: list[str] = []
    counts: dict[str, int] = {}
    for p in problems:
        k = kind(p)
        counts[k] = counts.get(k, 0) + 1
        if not k or counts[k] <= shown:
            out.append(p)
        elif counts[k] == shown + 1:
            out.append(k)  # placeholder, replaced by the count below
    return [f"... and {counts[p] - shown} more {p}" if p in counts else p for p in out]


@dataclass(frozen=True)
class Link:
    """megagrow parameter ``ours`` <-> Hugging Face tensor(s) ``theirs``, by ``how``."""

    ours: str
    theirs: tuple[str, ...]
    how: How = "copy"


def hf_kind(cfg: ModelConfig) -> str:
    """``bert``, ``gpt``, ``deit`` (with distillation token) or ``vit`` (DeiT family without it)."""
    if cfg.family == "bert" and cfg.bert_pre_ln:
        raise HFConversionError("no Hugging Face equivalent:", [
            "model.bert_pre_ln=true: Hugging Face's BertForMaskedLM is post-LN (no final LayerNorm); a pre-LN BERT "
            "can be neither exported to it nor initialised from it"])
    if cfg.family == "bert" and cfg.attn_local_bias:
        raise HFConversionError("no Hugging Face equivalent:", [
            f"model.attn_local_bias={cfg.attn_local_bias}: Hugging Face's BertForMaskedLM has no attention bias; "
            "a BERT trained with one can be neither exported to it nor initialised from it"])
    if cfg.family == "deit":
        return "deit" if cfg.distill_token else "vit"
    return cfg.family


def _wb(ours: str, theirs: str, how: How = "copy") -> list[Link]:
    """weight and bias of one module (``qkv``: the bias is split too; ``transpose``: the bias is copied)."""
    if how == "qkv":
        parts = theirs.split("|")
        return [Link(f"{ours}.{p}", tuple(f"{t}.{p}" for t in parts), "qkv") for p in ("weight", "bias")]
    return [Link(f"{ours}.weight", (f"{theirs}.weight",), how), Link(f"{ours}.bias", (f"{theirs}.bias",))]


def _block_links(kind: str, slot: int, layer: int) -> list[Link]:
    b = f"blocks.{slot}"
    if kind == "gpt":
        h = f"transformer.h.{layer}"
        return [*_wb(f"{b}.ln_1", f"{h}.ln_1"), *_wb(f"{b}.attn.qkv", f"{h}.attn.c_attn", "transpose"),
                *_wb(f"{b}.attn.proj", f"{h}.attn.c_proj", "transpose"), *_wb(f"{b}.ln_2", f"{h}.ln_2"),
                *_wb(f"{b}.mlp.fc_in", f"{h}.mlp.c_fc", "transpose"),
                *_wb(f"{b}.mlp.fc_out", f"{h}.mlp.c_proj", "transpose")]
    if kind == "bert":
        h = f"bert.encoder.layer.{layer}"
        a = f"{h}.attention.self"
        return [*_wb(f"{b}.attn.qkv", f"{a}.query|{a}.key|{a}.value", "qkv"),
                *_wb(f"{b}.attn.proj", f"{h}.attention.output.dense"),
                *_wb(f"{b}.ln_1", f"{h}.attention.output.LayerNorm"),
                *_wb(f"{b}.mlp.fc_in", f"{h}.intermediate.dense"), *_wb(f"{b}.mlp.fc_out", f"{h}.output.dense"),
                *_wb(f"{b}.ln_2", f"{h}.output.LayerNorm")]
    h = f"{kind}.encoder.layer.{layer}"  # deit / vit
    a = f"{h}.attention.attention"
    return [*_wb(f"{b}.ln_1", f"{h}.layernorm_before"), *_wb(f"{b}.attn.qkv", f"{a}.query|{a}.key|{a}.value", "qkv"),
            *_wb(f"{b}.attn.proj", f"{h}.attention.output.dense"), *_wb(f"{b}.ln_2", f"{h}.layernorm_after"),
            *_wb(f"{b}.mlp.fc_in", f"{h}.intermediate.dense"), *_wb(f"{b}.mlp.fc_out", f"{h}.output.dense")]


def _outer_links(kind: str) -> tuple[list[Link], list[Link]]:
    """The links before and after the blocks."""
    if kind == "gpt":
        return ([Link("embed.tokens.weight", ("transformer.wte.weight",)),
                 Link("embed.positions.weight", ("transformer.wpe.weight",))],
                _wb("final_ln", "transformer.ln_f"))
    if kind == "bert":
        e = "bert.embeddings"
        return ([Link("embed.tokens.weight", (f"{e}.word_embeddings.weight",)),
                 Link("embed.positions.weight", (f"{e}.position_embeddings.weight",)),
                 Link("embed.token_types.weight", (f"{e}.token_type_embeddings.weight",)),
                 *_wb("embed.ln", f"{e}.LayerNorm")],
                [*_wb("mlm.dense", "cls.predictions.transform.dense"),
                 *_wb("mlm.ln", "cls.predictions.transform.LayerNorm"), Link("mlm.bias", ("cls.predictions.bias",))])
    e = f"{kind}.embeddings"
    before = [Link("cls_token", (f"{e}.cls_token",))]
    if kind == "deit":
        before.append(Link("dist_token", (f"{e}.distillation_token",)))
    before += [Link("pos_embed", (f"{e}.position_embeddings",)),
               *_wb("patch_embed.proj", f"{e}.patch_embeddings.projection")]
    after = _wb("final_ln", f"{kind}.layernorm")
    if kind == "deit":
        after += [*_wb("head", "cls_classifier"), *_wb("head_dist", "distillation_classifier")]
    else:
        after += _wb("head", "classifier")
    return before, after


def links(kind: str, layer_map: Sequence[int]) -> list[Link]:
    """Every link of a model of ``kind`` exported along ``layer_map`` (Hugging Face layer i <- slot map[i])."""
    before, after = _outer_links(kind)
    blocks = [link for i, k in enumerate(layer_map) for link in _block_links(kind, k, i)]
    return [*before, *blocks, *after]


#: Hugging Face tensors that are copies of another (tied weights; ``save_pretrained`` leaves them out).
TIED = {"gpt": {"lm_head.weight": "transformer.wte.weight"},
        "bert": {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
                 "cls.predictions.decoder.bias": "cls.predictions.bias"}}


def _ignorable(kind: str, name: str) -> bool:
    """Buffers of older ``transformers`` versions and heads megagrow has no counterpart of (docs/parameter-names.md)."""
    if kind == "gpt":
        return name.endswith((".attn.bias", ".attn.masked_bias"))
    if kind == "bert":
        return name == "bert.embeddings.position_ids" or name.startswith(("bert.pooler.", "cls.seq_relationship."))
    return False


# ---------------------------------------------------------------------------------------------- config.json


def hf_config(cfg: ModelConfig, n_layers: int, token_ids: Mapping[str, int] | None = None,
              labels: Sequence[str] | None = None) -> dict[str, Any]:
    """``config.json`` of the Hugging Face model equivalent to ``cfg`` with ``n_layers`` layers.

    ``token_ids``: the tokenizer's special ids (``pad``, ``eos``, ...) for the text families; ``labels``: class
    names for DeiT (default ``LABEL_i``). Dropout is the model's (a module in eval mode applies none)."""
    kind = hf_kind(cfg)
    ids = dict(token_ids or {})
    common: dict[str, Any] = {"architectures": [ARCHITECTURES[kind]], "model_type": MODEL_TYPES[kind],
                              "initializer_range": cfg.init_std}
    if kind == "gpt":
        eos = ids.get("eos")
        return {**common, "vocab_size": cfg.vocab_size, "n_positions": cfg.max_seq_len, "n_embd": cfg.hidden,
                "n_layer": n_layers, "n_head": cfg.n_heads, "n_inner": cfg.ffn_dim, "activation_function": "gelu_new",
                "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.attn_dropout,
                "layer_norm_epsilon": cfg.ln_eps, "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
                "reorder_and_upcast_attn": False, "tie_word_embeddings": True, "use_cache": True,
                "bos_token_id": eos, "eos_token_id": eos, "pad_token_id": ids.get("pad")}
    shared = {"hidden_size": cfg.hidden, "num_hidden_layers": n_layers, "num_attention_heads": cfg.n_heads,
              "intermediate_size": cfg.ffn_dim, "hidden_act": "gelu", "hidden_dropout_prob": cfg.dropout,
              "attention_probs_dropout_prob": cfg.attn_dropout, "layer_norm_eps": cfg.ln_eps}
    if kind == "bert":
        return {**common, **shared, "vocab_size": cfg.vocab_size, "max_position_embeddings": cfg.max_seq_len,
                "type_vocab_size": cfg.type_vocab_size, "position_embedding_type": "absolute",
                "tie_word_embeddings": True, "pad_token_id": ids.get("pad", 0)}
    names = list(labels) if labels is not None else [f"LABEL_{i}" for i in range(cfg.num_classes)]
    if len(names) != cfg.num_classes:
        raise ValueError(f"labels: {len(names)} class names for model.num_classes={cfg.num_classes}")
    return {**common, **shared, "image_size": cfg.image_size, "patch_size": cfg.patch_size,
            "num_channels": cfg.in_chans, "qkv_bias": True, "encoder_stride": cfg.patch_size,
            "id2label": {str(i): n for i, n in enumerate(names)}, "label2id": {n: i for i, n in enumerate(names)}}


@dataclass(frozen=True)
class _Field:
    ours: str  # ModelConfig field
    theirs: str  # config.json key
    default: Any = None  # transformers' default when the key is absent


_FIELDS: dict[str, tuple[_Field, ...]] = {
    "gpt": (_Field("n_layers", "n_layer", 12), _Field("hidden", "n_embd", 768), _Field("n_heads", "n_head", 12),
            _Field("ffn", "n_inner"), _Field("vocab_size", "vocab_size", 50257),
            _Field("max_seq_len", "n_positions", 1024), _Field("ln_eps", "layer_norm_epsilon", 1e-5)),
    "bert": (_Field("n_layers", "num_hidden_layers", 12), _Field("hidden", "hidden_size", 768),
             _Field("n_heads", "num_attention_heads", 12), _Field("ffn", "intermediate_size", 3072),
             _Field("vocab_size", "vocab_size", 30522), _Field("max_seq_len", "max_position_embeddings", 512),
             _Field("type_vocab_size", "type_vocab_size", 2), _Field("ln_eps", "layer_norm_eps", 1e-12)),
    "deit": (_Field("n_layers", "num_hidden_layers", 12), _Field("hidden", "hidden_size", 768),
             _Field("n_heads", "num_attention_heads", 12), _Field("ffn", "intermediate_size", 3072),
             _Field("ln_eps", "layer_norm_eps", 1e-12), _Field("image_size", "image_size", 224),
             _Field("patch_size", "patch_size", 16), _Field("in_chans", "num_channels", 3)),
}
_FAMILY_OF = {"gpt2": "gpt", "bert": "bert", "deit": "deit", "vit": "deit"}


def _num_labels(config: Mapping[str, Any]) -> int:
    if "id2label" in config and isinstance(config["id2label"], Mapping):
        return len(config["id2label"])
    return int(config.get("num_labels", 2))


def model_fields_from_hf(config: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The :class:`ModelConfig` fields a Hugging Face ``config.json`` describes, and the settings in it megagrow
    cannot compute (each a problem line). Raises :class:`HFConversionError` for an unsupported ``model_type``."""
    model_type = config.get("model_type")
    if model_type not in _FAMILY_OF:
        raise HFConversionError("unsupported Hugging Face model", [
            f"config.json model_type={model_type!r}: expected one of {sorted(_FAMILY_OF)} (bert -> BertForMaskedLM, "
            "gpt2 -> GPT2LMHeadModel, deit/vit -> image classification)"])
    family = _FAMILY_OF[model_type]
    out: dict[str, Any] = {"family": family}
    for f in _FIELDS[family]:
        value = config.get(f.theirs, f.default)
        out[f.ours] = value
    problems: list[str] = []
    if family == "gpt":
        out["ffn"] = out["ffn"] if out["ffn"] is not None else 4 * out["hidden"]
        act = config.get("activation_function", "gelu_new")
        if act not in _GPT_ACTS:
            problems.append(f"config.json activation_function={act!r}: megagrow's GPT computes the tanh GELU "
                            f"(one of {list(_GPT_ACTS)})")
        for key, want in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                          ("add_cross_attention", False)):
            if bool(config.get(key, want)) is not want:
                problems.append(f"config.json {key}={config.get(key)!r}: megagrow's GPT needs {want}")
    else:
        act = config.get("hidden_act", "gelu")
        if act not in _EXACT_GELU:
            problems.append(f"config.json hidden_act={act!r}: megagrow's {family} computes the exact GELU ('gelu')")
    if family == "bert" and config.get("position_embedding_type", "absolute") != "absolute":
        problems.append(f"config.json position_embedding_type={config.get('position_embedding_type')!r}: megagrow's "
                        "BERT has absolute (learned) positions")
    if family == "deit":
        out["distill_token"] = model_type == "deit"
        out["num_classes"] = _num_labels(config)
        if not config.get("qkv_bias", True):
            problems.append("config.json qkv_bias=false: megagrow's attention has a QKV bias")
    if family in ("bert", "gpt") and not config.get("tie_word_embeddings", True):
        problems.append("config.json tie_word_embeddings=false: megagrow's output layer is the token embedding (tied)")
    return out, problems


def config_problems(config: Mapping[str, Any], expect: ModelConfig) -> list[str]:
    """Every difference between a Hugging Face ``config.json`` and the architecture ``expect`` (plus the
    settings megagrow cannot compute at all)."""
    theirs, problems = model_fields_from_hf(config)
    kind = hf_kind(expect)
    if theirs["family"] != expect.family:
        return [f"config.json model_type={config.get('model_type')!r} is a {theirs['family']} model, but the run's "
                f"model.family={expect.family!r} (expected model_type {MODEL_TYPES[kind]!r})"]
    keys = {f.ours: f.theirs for f in _FIELDS[expect.family]}
    keys.update(num_classes="id2label", distill_token="model_type")
    for name, value in theirs.items():
        if name == "family":
            continue
        ours = expect.ffn_dim if name == "ffn" else getattr(expect, name)
        same = math.isclose(float(value), float(ours), rel_tol=1e-9) if name == "ln_eps" else value == ours
        if not same:
            shown = config.get("model_type") if name == "distill_token" else value
            problems.append(f"config.json {keys[name]}={shown!r} ({name}={value!r}), but the run's model has "
                            f"model.{name}={ours!r}")
    return problems


def model_config_from_hf(config: Mapping[str, Any], base: ModelConfig | None = None) -> ModelConfig:
    """A :class:`ModelConfig` with the architecture of a Hugging Face ``config.json`` (other fields from ``base``)."""
    theirs, problems = model_fields_from_hf(config)
    if problems:
        raise HFConversionError("config.json describes a model megagrow cannot compute:", problems)
    base = base or ModelConfig()
    known = {f.name for f in fields(ModelConfig)}
    return replace(base, size=None, **{k: v for k, v in theirs.items() if k in known})


# ---------------------------------------------------------------------------------------------- tensors


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter of the megagrow model ``cfg`` (built on the meta device: no memory)."""
    from megagrow.models.build import build_model

    with torch.device("meta"):
        model = build_model(cfg)
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def _check_params(params: Mapping[str, torch.Tensor], cfg: ModelConfig) -> None:
    want = param_shapes(cfg)
    problems = [f"missing parameter {n} {list(s)}" for n, s in want.items() if n not in params]
    problems += [f"unexpected parameter {n}" for n in params if n not in want]
    problems += [f"{n}: shape {list(params[n].shape)}, expected {list(s)}" for n, s in want.items()
                 if n in params and tuple(params[n].shape) != s]
    if problems:
        raise HFConversionError(f"the parameters do not match the {cfg.family} model of {cfg.n_layers} slots, "
                                f"hidden {cfg.hidden}:", problems)


def _export_tensors(params: Mapping[str, torch.Tensor], link_list: Sequence[Link]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for link in link_list:
        t = params[link.ours]
        if link.how == "copy":
            out[link.theirs[0]] = t.detach().clone()
        elif link.how == "transpose":
            out[link.theirs[0]] = t.detach().t().contiguous()
        else:
            for name, part in zip(link.theirs, t.detach().chunk(3, dim=0), strict=True):
                out[name] = part.clone()
    return out


def to_hf(params: Mapping[str, torch.Tensor], cfg: ModelConfig, layer_map: Sequence[int] | None = None,
          token_ids: Mapping[str, int] | None = None,
          labels: Sequence[str] | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config.json, state dict)`` of the Hugging Face model that computes what ``cfg`` with ``params`` computes
    along ``layer_map`` (default: every slot once). Each tensor is a fresh copy (a slot run twice gives two
    layers); tied copies are left out, as ``save_pretrained`` does."""
    layer_map = check_layer_map(list(range(cfg.n_layers)) if layer_map is None else layer_map, cfg.n_layers)
    _check_params(params, cfg)
    kind = hf_kind(cfg)
    return hf_config(cfg, len(layer_map), token_ids, labels), _export_tensors(params, links(kind, layer_map))


def hf_shapes(cfg: ModelConfig, n_layers: int | None = None) -> dict[str, tuple[int, ...]]:
    """The Hugging Face tensor names and shapes an export of ``cfg`` (identity map, or ``n_layers`` layers of
    slot 0) has: what an import into ``cfg`` expects."""
    meta = {n: torch.empty(s, device="meta") for n, s in param_shapes(cfg).items()}
    layer_map = list(range(cfg.n_layers)) if n_layers is None else [0] * n_layers
    return {n: tuple(t.shape) for n, t in _export_tensors(meta, links(hf_kind(cfg), layer_map)).items()}


def from_hf(tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any], expect: ModelConfig,
            source: str = "the Hugging Face checkpoint") -> dict[str, torch.Tensor]:
    """megagrow parameters (Hugging Face layer ``i`` -> slot ``i``) of the model ``expect`` from a Hugging Face
    state dict and its ``config.json``. Raises :class:`HFConversionError` listing every problem at once: config
    differences, missing and unexpected tensors, wrong shapes, tied copies that differ from their original."""
    kind = hf_kind(expect)
    if config.get("model_type") != MODEL_TYPES[kind]:  # other tensor names altogether: the config says why
        raise HFConversionError(f"{source} does not fit the run's start model:", config_problems(config, expect))
    problems = config_problems(config, expect)
    want = hf_shapes(expect)
    tied = TIED.get(kind, {})
    for name, original in tied.items():
        if name in tensors and original in tensors:
            a, b = tensors[name], tensors[original]
            if a.shape != b.shape or not torch.equal(a, b):
                problems.append(f"tensor {name} differs from {original}: megagrow ties them (one tensor)")
    given = {n for n in tensors if n not in tied and not _ignorable(kind, n)}
    problems += [f"missing tensor {n} {list(s)}" for n, s in want.items() if n not in given]
    problems += [f"unexpected tensor {n} {list(tensors[n].shape)}" for n in sorted(given - set(want))]
    problems += [f"tensor {n}: shape {list(tensors[n].shape)}, expected {list(s)}" for n, s in want.items()
                 if n in given and tuple(tensors[n].shape) != s]
    if problems:
        raise HFConversionError(
            f"{source} does not fit the run's start model ({expect.family}, {expect.n_layers} layers, hidden "
            f"{expect.hidden}, {expect.n_heads} heads, ffn {expect.ffn_dim}); {len(problems)} problem(s):", problems)
    out: dict[str, torch.Tensor] = {}
    for link in links(kind, range(expect.n_layers)):
        src = [tensors[n].detach() for n in link.theirs]
        if link.how == "copy":
            out[link.ours] = src[0].clone()
        elif link.how == "transpose":
            out[link.ours] = src[0].t().contiguous()
        else:
            out[link.ours] = torch.cat(src, dim=0)
    return out


__all__ = ["ARCHITECTURES", "HFConversionError", "Link", "TIED", "config_problems", "from_hf", "hf_config",
           "hf_kind", "hf_shapes", "links", "model_config_from_hf", "model_fields_from_hf", "param_shapes", "to_hf"]
