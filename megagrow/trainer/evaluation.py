"""How a run evaluates: how many validation samples, in which micro-batches, or not at all.

Evaluation is off (no ``val_loss`` in the metrics) when ``data.eval_samples`` is 0 or the dataset has no
validation split. Otherwise the fixed set is the first ``min(data.eval_samples, validation size)``
samples, rounded down to whole global micro-batches; a validation split smaller than one global
micro-batch (a small text file's) is evaluated in smaller micro-batches rather than refused.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EvalLayout", "eval_layout"]


@dataclass(frozen=True)
class EvalLayout:
    """``n_samples`` validation samples in micro-batches of ``micro_batch_size`` per rank; 0 = no evaluation."""

    n_samples: int
    micro_batch_size: int
    note: str | None = None
    """A line for the console when the layout is not the plain one (evaluation off, smaller micro-batches)."""

    @property
    def enabled(self) -> bool:
        return self.n_samples > 0


def eval_layout(eval_samples: int, n_validation: int | None, micro_batch_size: int, world_size: int,
                data_path: str = "") -> EvalLayout:
    """The evaluation of a run (pure). ``n_validation`` is the validation split's size in samples, None
    when there is none; a :class:`ValueError` names the fix when not even one sample per rank fits."""
    if eval_samples <= 0:
        return EvalLayout(0, 0, "evaluation off (data.eval_samples=0): the metrics have no val_loss")
    where = f"data.path={data_path}" if data_path else "the dataset"
    if n_validation is None:
        return EvalLayout(0, 0, f"evaluation off: {where} has no validation split (built with --val-fraction 0; "
                                "rebuild it with a --val-fraction above 0 to evaluate): the metrics have no val_loss")
    want = min(eval_samples, n_validation)
    if want < world_size:
        if eval_samples < world_size:
            fix = f"set data.eval_samples to at least {world_size}, or to 0 to train without evaluation"
        else:
            fix = ("rebuild it with a larger --val-fraction (or more text), or set data.eval_samples=0 to train "
                   "without evaluation")
        raise ValueError(f"data.eval_samples={eval_samples}: the validation split of {where} has {n_validation} "
                         f"samples, fewer than one per rank ({world_size} ranks); {fix}")
    mbs = min(micro_batch_size, want // world_size)
    per_step = mbs * world_size
    n = want // per_step * per_step
    note = None
    if mbs < micro_batch_size:
        why = (f"the validation split of {where} holds {n_validation} samples" if n_validation < eval_samples
               else f"data.eval_samples={eval_samples}")
        note = (f"evaluating {n} validation samples in micro-batches of {mbs} per rank, fewer than "
                f"data.micro_batch_size={micro_batch_size} ({why})")
    return EvalLayout(n, mbs, note)
