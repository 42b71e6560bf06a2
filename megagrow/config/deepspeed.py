"""The DeepSpeed JSON, generated from the config: there are no hand-edited DeepSpeed templates."""

from __future__ import annotations

from typing import Any

from megagrow.config.schema import Config


def deepspeed_config(cfg: Config, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config for this run. The optimizer and LR schedule are ours (torch AdamW, set
    per step from :mod:`megagrow.trainer.lr_schedule`), so they do not appear here."""
    from megagrow.trainer.faults import owns_step
    from megagrow.trainer.precision import concrete

    stage = cfg.distributed.zero_stage
    precision = concrete(cfg.train.precision)
    zero: dict[str, Any] = {"stage": stage}
    if stage >= 2:
        zero.update(overlap_comm=False, contiguous_gradients=True)
    if stage == 3:
        zero.update(stage3_param_persistence_threshold=0)
    bucket = int(cfg.distributed.bucket_elements)
    if bucket and stage >= 1:
        zero.update(reduce_bucket_size=bucket, allgather_bucket_size=bucket)
        if stage == 3:
            zero.update(stage3_prefetch_bucket_size=bucket, stage3_max_live_parameters=4 * bucket,
                        stage3_max_reuse_distance=4 * bucket)
    return {
        "train_batch_size": cfg.global_batch_size(world_size),
        "train_micro_batch_size_per_gpu": cfg.data.micro_batch_size,
        "gradient_accumulation_steps": cfg.train.grad_accum,
        # ZeRO-0 without DeepSpeed's bf16 wrapper: megagrow clips (faults.clip_owned: fused, no per-parameter norms)
        "gradient_clipping": 0.0 if owns_step(stage, precision) else cfg.optim.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "torch_autocast": {"enabled": precision == "bf16-autocast", "dtype": "torch.bfloat16"},
        "fp16": {"enabled": False},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }

