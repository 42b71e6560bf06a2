"""Universal checkpoints: a :class:`FullState` in safetensors plus JSON metadata.

Layout of ``<run>/checkpoints/``::

    step_00000100/
        params-RRRRR-of-WWWWW.safetensors     fp32 parameters, keyed by stable parameter name: rank R's
                                              share (every parameter in exactly one shard)
        optimizer-RRRRR-of-WWWWW.safetensors  exp_avg.<name>, exp_avg_sq.<name> of the same parameters
        plan.safetensors       the growth plan's tensors, if it keeps any (e.g. a V-cycle snapshot)
        meta.json              step, counters, loader cursor, plan state, architecture, adam_step and
                               param_steps (AdamW step counts: the global one and the parameters whose
                               count differs from it), shards, the resolved config
    latest                     name of the newest complete checkpoint directory

Sharded writes: every rank gathers (a collective, one parameter at a time) but keeps only its share
(parameter ``i`` belongs to rank ``i mod W``), so no rank holds the whole state and the writes run in
parallel. Reading merges the shards: a checkpoint written by W ranks resumes on any world size.

Nothing is pickled: loading a checkpoint from an untrusted source cannot execute code. A checkpoint
is written to ``step_XXXXXXXX.tmp`` and renamed into place, then ``latest`` is replaced atomically,
so a crash never leaves ``latest`` pointing at partial data. Because the state is full and unsharded,
the same checkpoint resumes on any world size and ZeRO stage.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from megagrow.state import FullState
from megagrow.trainer.faults import fault

FORMAT = "megagrow-checkpoint"
VERSION = 2  # v2: parameters and moments in one shard per writing rank


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def shard_name(kind: str, rank: int, world: int) -> str:
    return f"{kind}-{rank:05d}-of-{world:05d}.safetensors"


def begin_checkpoint(ckpt_root: Path, step: int) -> Path:
    """Main rank: a fresh ``step_XXXXXXXX.tmp`` directory (a leftover of a killed write is removed)."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_root / (step_dir_name(step) + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def write_shard(tmp: Path, rank: int, world: int, state: FullState) -> None:
    """Every rank: its share of the parameters and moments (whatever names ``state`` holds)."""
    save_file({k: v.contiguous() for k, v in state.params.items()}, str(tmp / shard_name("params", rank, world)))
    opt = {f"{m}.{k}": v.contiguous() for m in ("exp_avg", "exp_avg_sq") for k, v in getattr(state, m).items()}
    save_file(opt, str(tmp / shard_name("optimizer", rank, world)))


def write_plan_shard(tmp: Path, rank: int, world: int, tensors: dict[str, torch.Tensor]) -> None:
    """Every rank: its share of a plan's sharded tensors (``plan-RRRRR-of-WWWWW.safetensors``), whole tensors."""
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / shard_name("plan", rank, world)))


def finalize_checkpoint(ckpt_root: Path, tmp: Path, step: int, adam_step: int, meta: dict[str, Any], keep_last: int,
                        world: int, extra_tensors: dict[str, torch.Tensor] | None = None,
                        param_steps: dict[str, int] | None = None) -> Path:
    """Main rank, after every shard is written: plan tensors, ``meta.json``, rename into place, then
    ``latest``, then pruning. A crash before the rename leaves only a ``.tmp`` directory that nothing reads.
    ``adam_step``/``param_steps``: the state's AdamW step counts (:class:`FullState`), stored in the JSON."""
    if extra_tensors:
        save_file({k: v.contiguous() for k, v in extra_tensors.items()}, str(tmp / "plan.safetensors"))
    fault("checkpoint", step)  # tests: kill -9 here leaves a partial .tmp directory behind
    full_meta = {"format": FORMAT, "version": VERSION, "step": step, "adam_step": adam_step,
                 "param_steps": {n: int(v) for n, v in sorted((param_steps or {}).items())}, "shards": world, **meta}
    (tmp / "meta.json").write_text(json.dumps(full_meta, indent=2, sort_keys=True))
    final = ckpt_root / step_dir_name(step)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_text(ckpt_root / "latest", final.name + "\n")
    _prune(ckpt_root, keep_last)
    return final


def save_checkpoint(ckpt_root: Path, step: int, state: FullState, meta: dict[str, Any], keep_last: int,
                    extra_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a whole checkpoint from one process (one shard) and prune to the newest ``keep_last``.
    ``extra_tensors`` (a growth plan's state, e.g. a snapshot to interpolate with) go to ``plan.safetensors``."""
    tmp = begin_checkpoint(ckpt_root, step)
    write_shard(tmp, 0, 1, state)
    return finalize_checkpoint(ckpt_root, tmp, step, state.adam_step, meta, keep_last, 1, extra_tensors,
                               param_steps=state.param_steps)


def _prune(ckpt_root: Path, keep_last: int) -> None:
    done = sorted(p for p in ckpt_root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in done[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    pointer = ckpt_root / "latest"
    if not pointer.is_file():
        return None
    path = ckpt_root / pointer.read_text().strip()
    if not (path / "meta.json").is_file():
        raise FileNotFoundError(f"{pointer} names {path.name}, which is not a complete checkpoint")
    return path


def load_checkpoint_meta(path: Path) -> dict[str, Any]:
    """The JSON side of a checkpoint (counters, data cursor, plan state, config), validated; no tensors."""
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path}: not a megagrow checkpoint (no meta.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{meta_path}: format {meta.get('format')!r} v{meta.get('version')!r}, "
                         f"expected {FORMAT!r} v{VERSION}")
    return meta


def checkpoint_steps(meta: dict[str, Any]) -> tuple[int, dict[str, int]]:
    """``(adam_step, param_steps)`` of a checkpoint's metadata. A checkpoint written before per-parameter
    step counts has no ``param_steps``: every parameter then has ``adam_step``."""
    adam_step = int(meta.get("adam_step", 0))
    raw = meta.get("param_steps") or {}
    if not isinstance(raw, dict) or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= adam_step
                                        for v in raw.values()):
        raise ValueError(f"checkpoint meta: param_steps must map names to step counts in 0..adam_step={adam_step}")
    return adam_step, {str(n): int(v) for n, v in raw.items() if v != adam_step}


def load_checkpoint(path: Path) -> tuple[FullState, dict[str, Any]]:
    """Read a checkpoint directory written by :func:`save_checkpoint`."""
    meta = load_checkpoint_meta(path)
    world = int(meta.get("shards", 1))
    params: dict[str, torch.Tensor] = {}
    moments: dict[str, dict[str, torch.Tensor]] = {"exp_avg": {}, "exp_avg_sq": {}}
    for rank in range(world):
        p_path, o_path = path / shard_name("params", rank, world), path / shard_name("optimizer", rank, world)
        if not p_path.is_file() or not o_path.is_file():
            raise FileNotFoundError(f"{path}: shard {rank} of {world} is missing ({p_path.name}, {o_path.name})")
        shard = load_file(str(p_path))
        if set(shard) & set(params):
            raise ValueError(f"{p_path}: parameters also in another shard: {sorted(set(shard) & set(params))[:3]}")
        params.update(shard)
        for key, t in load_file(str(o_path)).items():
            m, _, name = key.partition(".")
            if m not in moments:
                raise ValueError(f"{o_path}: unexpected tensor {key!r}")
            moments[m][name] = t
    adam_step, param_steps = checkpoint_steps(meta)
    unknown = sorted(set(param_steps) - set(params))
    if unknown:
        raise ValueError(f"{path}: meta.json has step counts of parameters that no shard holds: {unknown[:3]}")
    state = FullState(params, moments["exp_avg"], moments["exp_avg_sq"], adam_step, param_steps)
    return state, meta


def load_checkpoint_params(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The parameters of a checkpoint (all shards merged) and its metadata, without the optimizer moments."""
    meta = load_checkpoint_meta(path)
    world = int(meta.get("shards", 1))
    params: dict[str, torch.Tensor] = {}
    for rank in range(world):
        p_path = path / shard_name("params", rank, world)
        if not p_path.is_file():
            raise FileNotFoundError(f"{path}: shard {rank} of {world} is missing ({p_path.name})")
        shard = load_file(str(p_path))
        if set(shard) & set(params):
            raise ValueError(f"{p_path}: parameters also in another shard: {sorted(set(shard) & set(params))[:3]}")
        params.update(shard)
    return params, meta


def load_plan_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The growth plan's tensors saved with a checkpoint (empty when it has none): ``plan.safetensors`` (rank 0's)
    and the shards every rank wrote of those it kept in partitions (:func:`write_plan_shard`)."""
    out: dict[str, torch.Tensor] = {}
    for f in [path / "plan.safetensors", *sorted(path.glob("plan-*-of-*.safetensors"))]:
        if f.is_file():
            part = load_file(str(f))
            twice = sorted(set(part) & set(out))
            if twice:
                raise ValueError(f"{path}: plan tensors {twice[:3]} are in more than one file (a corrupt checkpoint)")
            out.update(part)
    return out
