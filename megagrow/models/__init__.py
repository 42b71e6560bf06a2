"""Transformer models with a layer registry: K weight slots run along an explicit layer map."""

from megagrow.flops import Arch
from megagrow.models.bert import BertModel
from megagrow.models.build import MODEL_CLASSES, build_model
from megagrow.models.core import IGNORE_INDEX, MegagrowModel, ModelOutput, check_layer_map
from megagrow.models.gpt import GPTModel
from megagrow.models.masks import GrowthMasks
from megagrow.models.sizes import SIZES
from megagrow.models.spec import ModelConfig
from megagrow.models.vit import DeiTModel

__all__ = [
    "IGNORE_INDEX",
    "MODEL_CLASSES",
    "SIZES",
    "Arch",
    "BertModel",
    "DeiTModel",
    "GPTModel",
    "GrowthMasks",
    "MegagrowModel",
    "ModelConfig",
    "ModelOutput",
    "build_model",
    "check_layer_map",
]
