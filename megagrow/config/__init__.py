"""The one source of truth for a run: a tree of typed dataclasses.

Loaded from YAML (``include:`` lists other YAML files merged underneath), then dotted CLI overrides
(``--optim.lr=3e-4 --model.n_layers=6``), then validated. Every error names the field, the bad value
and what is allowed; unknown keys are errors with a close-match suggestion. The resolved tree is
written into the run directory, and the DeepSpeed JSON is *generated* from it
(:func:`deepspeed_config`) — there are no hand-edited DeepSpeed templates.
"""

from megagrow.config.deepspeed import deepspeed_config
from megagrow.config.load import (
    config_from_dict,
    config_from_meta,
    config_tree,
    describe,
    dump_yaml,
    expand_path,
    load_config,
    parse_overrides,
)
from megagrow.config.schema import (
    CheckpointConfig,
    Config,
    ConfigError,
    DataConfig,
    DistributedConfig,
    LoggingConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from megagrow.config.validate import validate, warnings_for
from megagrow.growth.config import GrowthConfig

__all__ = ["CheckpointConfig", "Config", "ConfigError", "DataConfig", "DistributedConfig", "GrowthConfig",
           "LoggingConfig", "OptimConfig", "RunConfig", "TrainConfig", "config_from_dict", "config_from_meta",
           "config_tree", "deepspeed_config", "describe", "dump_yaml", "expand_path", "load_config",
           "parse_overrides", "validate", "warnings_for"]
