"""``build_model``: a validated ``ModelConfig`` -> the family's model."""

from __future__ import annotations

from megagrow.models.bert import BertModel
from megagrow.models.core import MegagrowModel
from megagrow.models.gpt import GPTModel
from megagrow.models.spec import ModelConfig
from megagrow.models.vit import DeiTModel

MODEL_CLASSES: dict[str, type[MegagrowModel]] = {"bert": BertModel, "gpt": GPTModel, "deit": DeiTModel}


def build_model(cfg: ModelConfig) -> MegagrowModel:
    """Build the model for ``cfg`` on the current default device/dtype (use ``torch.device("meta")``
    as a context manager to build without allocating). Raises ValueError listing every config problem,
    including a vocabulary size still unresolved (0) for bert/gpt."""
    problems = cfg.validate()
    if cfg.family in ("bert", "gpt") and cfg.vocab_size == 0:
        problems.append(
            "model.vocab_size=0: must be set for bert/gpt (normally taken from the data's tokenizer)"
        )
    if problems:
        raise ValueError("invalid model config:\n  " + "\n  ".join(problems))
    return MODEL_CLASSES[cfg.family](cfg)
