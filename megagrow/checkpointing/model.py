"""The model a checkpoint holds, as it stands at the checkpoint's step: for export, evaluation and sampling.

A checkpoint stores the weight slots of the architecture in effect (``meta.json``'s ``model``) and the run's
config; the growth plan rebuilt from that config says which *layer map* (and, for MSG, which growth masks)
evaluates the model after the checkpoint's last step — exactly what the trainer's own evaluation ran. So an
Apollo checkpoint in a phase with N live slots runs the target depth through its interpolation map, a
multi-level checkpoint in a coarse phase is the coarse model, and a checkpoint inside MSG's mask ramp carries
the masks. Everything runs as a plain module (no DeepSpeed engine), on CPU by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from megagrow.checkpointing.store import latest_checkpoint, load_checkpoint_params
from megagrow.config import Config, config_from_meta
from megagrow.flops import deit_seq_len
from megagrow.growth.plans import build_plan
from megagrow.models import GrowthMasks, MegagrowModel, ModelConfig, build_model, check_layer_map


def find_checkpoint(path: Path | str) -> Path:
    """A checkpoint directory from a checkpoint directory, a run directory (its newest checkpoint) or a run's
    ``checkpoints/`` directory; FileNotFoundError saying which of these ``path`` is not."""
    path = Path(path)
    if (path / "meta.json").is_file():
        return path
    for root in (path / "checkpoints", path):
        if (root / "latest").is_file():
            found = latest_checkpoint(root)
            if found is not None:
                return found
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint or run directory")
    raise FileNotFoundError(f"{path}: not a checkpoint (no meta.json) nor a run directory with checkpoints "
                            "(no checkpoints/latest)")


@dataclass
class CheckpointModel:
    """A checkpoint's parameters with the architecture, layer map and masks in effect at its step."""

    path: Path
    step: int
    config: Config  # the run's config as the checkpoint recorded it (``model`` is the plan's *target*)
    model_cfg: ModelConfig  # the architecture in effect (the slots the checkpoint holds)
    layer_map: tuple[int, ...]
    masks: GrowthMasks | None
    phase: str
    params: dict[str, torch.Tensor]
    meta: dict[str, Any]

    def build(self, device: torch.device | str = "cpu") -> MegagrowModel:
        """The module with the checkpoint's weights, in eval mode."""
        model = build_model(self.model_cfg)
        model.load_state_dict(self.params, strict=True)
        return model.to(device).eval()

    def describe(self) -> str:
        m = self.model_cfg
        return (f"{self.path} (step {self.step}, phase {self.phase}): {m.family}, {m.n_layers} slots run as "
                f"{len(self.layer_map)} layers {list(self.layer_map)}, hidden {m.hidden}")


def plan_seq_len(cfg: Config) -> int:
    """Tokens per sample of the run's data (what growth boundaries in tokens are counted with)."""
    m = cfg.model
    if m.family == "deit":
        return deit_seq_len(m.image_size, m.patch_size, m.n_prefix_tokens)
    return cfg.data.seq_len


def open_checkpoint(path: Path | str) -> CheckpointModel:
    """Load a checkpoint's parameters and resolve the model in effect at its step (see the module docstring)."""
    ckpt = find_checkpoint(path)
    params, meta = load_checkpoint_params(ckpt)
    for key in ("model", "config", "counters"):
        if key not in meta:
            raise ValueError(f"{ckpt / 'meta.json'}: no {key!r} entry (not written by megagrow train)")
    cfg: Config = config_from_meta(meta["config"])
    model_cfg = ModelConfig(**meta["model"])
    step = int(meta["counters"]["step"])
    world = int(meta.get("world_size", 1))
    plan = build_plan(cfg.growth.plan, cfg.model.n_layers, cfg.growth, cfg.run.seed, cfg.train.max_steps,
                      model=cfg.model, tokens_per_step=cfg.global_batch_size(world) * plan_seq_len(cfg))
    if isinstance(meta.get("plan"), dict):
        plan.load_state_dict(meta["plan"])
    at = max(step - 1, 0)  # the model as it stands after the last step that ran (as the trainer evaluates it)
    try:
        layer_map = tuple(check_layer_map(plan.eval_layer_map(at), model_cfg.n_layers))
    except ValueError as e:
        raise ValueError(f"{ckpt}: the plan {cfg.growth.plan!r} at step {step} runs a layer map that does not fit the "
                         f"checkpoint's {model_cfg.n_layers} slots ({e})") from None
    return CheckpointModel(ckpt, step, cfg, model_cfg, layer_map, plan.eval_masks(at), plan.decide(at, 0).phase,
                           params, meta)


__all__ = ["CheckpointModel", "find_checkpoint", "open_checkpoint", "plan_seq_len"]
