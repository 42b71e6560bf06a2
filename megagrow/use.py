"""Using a trained model: ``megagrow eval`` (validation loss of any checkpoint) and ``megagrow sample`` (GPT text).

Both run the checkpoint as a plain module in eval mode (no DeepSpeed engine), with the layer map and growth
masks in effect at its step (:mod:`megagrow.checkpointing.model`), on CPU unless a device is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from megagrow.checkpointing.model import CheckpointModel, open_checkpoint
from megagrow.config import expand_path
from megagrow.data.tokenizer_identity import checkpoint_tokenizer, mismatch
from megagrow.models import IGNORE_INDEX, GrowthMasks, MegagrowModel


@dataclass(frozen=True)
class EvalResult:
    checkpoint: Path
    step: int
    data_path: str
    n_samples: int
    loss: float  # mean of the micro-batch losses, as the trainer's val_loss
    perplexity: float | None  # text: exp(loss)
    accuracy: float | None  # deit: top-1 accuracy of the averaged heads' logits
    layer_map: tuple[int, ...]

    def line(self) -> str:
        extra = f"  perplexity {self.perplexity:.4f}" if self.perplexity is not None else \
            f"  top-1 accuracy {self.accuracy:.4f}"
        return (f"step {self.step}: loss {self.loss:.6f}{extra}  ({self.n_samples} samples of "
                f"{expand_path(self.data_path)}, {len(self.layer_map)} layers {list(self.layer_map)})")


def evaluate_checkpoint(checkpoint: Path | str, data: str | None = None, samples: int | None = None,
                        micro_batch_size: int | None = None, device: str = "cpu") -> EvalResult:
    """Loss (and perplexity or top-1 accuracy) of a checkpoint on the first ``samples`` validation samples of its
    run's dataset (default: ``data.eval_samples``, the set its training evaluated) or of the dataset ``data``."""
    from megagrow.data.factory import build_data
    from megagrow.data.loader import EvalLoader
    from megagrow.trainer.evaluation import eval_layout

    cm = open_checkpoint(checkpoint)
    cfg = cm.config
    n = cfg.data.eval_samples if samples is None else samples
    if n < 1:
        raise ValueError(f"--samples {n}: must be >= 1" if samples is not None else
                         "the run evaluated no samples (data.eval_samples=0); pass --samples N")
    dcfg = replace(cfg.data, path=data if data is not None else cfg.data.path, eval_samples=n)
    bundle = build_data(dcfg, cfg.model, cfg.run.seed)
    if bundle.validation is None:
        raise ValueError(f"data.path={dcfg.path}: the dataset has no validation split (rebuild it with a "
                         "--val-fraction above 0)")
    m = cm.model_cfg
    trained = checkpoint_tokenizer(cm.meta)
    if trained is not None and bundle.tokenizer_sha256 is not None and trained != bundle.tokenizer_sha256:
        raise ValueError(mismatch(str(cm.path), trained, f"data.path={dcfg.path}", bundle.tokenizer_sha256))
    if m.family in ("bert", "gpt") and bundle.vocab_size > m.vocab_size:
        raise ValueError(f"data.path={dcfg.path}: its tokenizer has {bundle.vocab_size} tokens, more than the "
                         f"model's vocabulary ({m.vocab_size}): it was tokenized for another model")
    mbs = micro_batch_size or cfg.data.micro_batch_size
    layout = eval_layout(n, len(bundle.validation), mbs, 1, dcfg.path)
    loader = EvalLoader(bundle.validation, layout.micro_batch_size, layout.n_samples, 1, 0,
                        key_offset=bundle.eval_key_offset)
    model = cm.build(device)
    total, correct = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model(batch, cm.layer_map, cm.masks)
            total += float(out.loss)
            if m.family == "deit":
                correct += int((out.logits.argmax(-1) == batch["labels"]).sum())
    loss = total / len(loader)
    text = m.family in ("bert", "gpt")
    return EvalResult(cm.path, cm.step, str(dcfg.path), layout.n_samples, loss,
                      math.exp(loss) if text else None, None if text else correct / layout.n_samples, cm.layer_map)


# ---------------------------------------------------------------------------------------------- generation


def next_token(logits: torch.Tensor, temperature: float, top_k: int, generator: torch.Generator) -> int:
    """Greedy when ``temperature == 0`` or ``top_k == 1``; else a draw from softmax(logits / temperature) over the
    ``top_k`` most likely tokens (``top_k == 0``: all)."""
    if temperature == 0 or top_k == 1:
        return int(logits.argmax())
    logits = logits.float() / temperature
    if 0 < top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator))


def generate(model: MegagrowModel, layer_map: Sequence[int], ids: Sequence[int], max_new_tokens: int,
             temperature: float = 1.0, top_k: int = 0, seed: int = 0, stop_id: int | None = None,
             masks: GrowthMasks | None = None) -> list[int]:
    """Up to ``max_new_tokens`` tokens after ``ids`` (the context is cut to the model's positions), stopping after
    ``stop_id``; deterministic for a ``seed``. No KV cache: every token reruns the context."""
    if max_new_tokens < 0:
        raise ValueError(f"--max-new-tokens {max_new_tokens}: must be >= 0")
    if temperature < 0:
        raise ValueError(f"--temperature {temperature}: must be >= 0 (0 = greedy)")
    if top_k < 0:
        raise ValueError(f"--top-k {top_k}: must be >= 0 (0 = no cut)")
    if not ids:
        raise ValueError("generate: the context is empty")
    device = next(model.parameters()).device
    g = torch.Generator(device="cpu").manual_seed(seed)
    window = model.cfg.max_seq_len
    out = list(ids)
    new: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            x = torch.tensor([out[-window:]], dtype=torch.long, device=device)
            logits = model({"input_ids": x, "labels": torch.full_like(x, IGNORE_INDEX)}, layer_map, masks).logits
            tok = next_token(logits[0, -1].cpu(), temperature, top_k, g)
            out.append(tok)
            new.append(tok)
            if stop_id is not None and tok == stop_id:
                break
    return new


@dataclass(frozen=True)
class SampleResult:
    text: str  # the prompt and its continuation, decoded together
    prompt_ids: list[int]
    new_ids: list[int]


def _refuse_non_causal(cm: CheckpointModel) -> None:
    fam = cm.model_cfg.family
    if fam != "gpt":
        what = "a masked language model (it fills in [MASK] tokens, it does not continue text)" if fam == "bert" \
            else "an image classifier"
        raise ValueError(f"{cm.path}: megagrow sample generates text with a causal language model (family gpt); this "
                         f"checkpoint is {fam}, {what}. Use `megagrow eval` for its loss.")


def sample_checkpoint(checkpoint: Path | str, prompt: str, max_new_tokens: int = 50, temperature: float = 1.0,
                      top_k: int = 0, seed: int = 0, tokenizer: Path | str | None = None, stop_at_eos: bool = True,
                      device: str = "cpu") -> SampleResult:
    """Continue ``prompt`` with a GPT checkpoint, tokenized as the run's data was (paragraphs joined by the newline
    piece) after an ``[EOS]`` (how every document of the training stream starts)."""
    import sentencepiece as spm

    from megagrow.data.tokenizer import encode_paragraphs, newline_id
    from megagrow.interchange.export import run_tokenizer

    cm = open_checkpoint(checkpoint)
    _refuse_non_causal(cm)
    model_file, special = run_tokenizer(cm.config, tokenizer)
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    prompt_ids = [int(i) for i in encode_paragraphs(sp, prompt, newline_id(sp))]
    eos = special["eos"]
    new = generate(cm.build(device), cm.layer_map, [eos, *prompt_ids], max_new_tokens, temperature, top_k, seed,
                   eos if stop_at_eos else None, cm.masks)
    return SampleResult(sp.decode(prompt_ids + [t for t in new if t != eos]), prompt_ids, new)


__all__ = ["EvalResult", "SampleResult", "evaluate_checkpoint", "generate", "next_token", "sample_checkpoint"]
