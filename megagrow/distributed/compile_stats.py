"""What ``torch.compile`` has compiled in this process so far (``train.compile``), for a run to report.

Everything is read from dynamo's process-wide bookkeeping, which :func:`torch._dynamo.reset` clears (``counters``
it does not: clear ``torch._dynamo.utils.counters`` too to start a count from zero). Nothing in the trainer depends
on this module.
"""

from __future__ import annotations

from typing import TypedDict


class CompileStats(TypedDict):
    """What :func:`compile_stats` returns (all cumulative since dynamo was last reset / its counters cleared)."""

    frames: int  # Python frames dynamo was asked to compile (a cache miss: first call or a failed guard)
    frames_ok: int  # of those, the ones it compiled (not skipped or failed back to eager)
    graphs: int  # unique FX graphs handed to the backend (a graph break makes more than one graph per frame)
    recompiles: int  # compiles of a code object that already had a compiled variant: a guard failed (new shape,
    #                  train/eval switch, masks appearing...). Under train.compile every block runs the one code
    #                  object Block.forward, so this is graphs - 1 when nothing breaks the graph.
    graph_breaks: int  # graph breaks (each splits a frame's graph and falls back to Python between the pieces)
    compile_s: float  # wall seconds spent compiling: dynamo + backend for the forward frames plus the backward
    #                   graphs compiled lazily at their first backward (0.0 where torch does not record it)


def compile_stats() -> CompileStats:
    """Dynamo's counts of what was compiled so far and the seconds it took (see :class:`CompileStats`).

    Sources: ``torch._dynamo.utils.counters`` ("frames" total/ok, "stats" unique_graphs, "graph_break"), the
    per-frame compile counter of ``torch._dynamo.convert_frame`` (recompiles) and
    ``torch._dynamo.utils.calculate_time_spent()["total_wall_time"]`` (entire_frame_compile +
    entire_backward_compile). A private name that a torch version lacks counts as 0 rather than failing the run."""
    import torch._dynamo.convert_frame as convert_frame
    from torch._dynamo import utils

    counters = utils.counters
    per_frame = getattr(convert_frame, "FRAME_COMPILE_COUNTER", {})
    try:
        compile_s = float(utils.calculate_time_spent().get("total_wall_time", 0.0))
    except AttributeError:
        compile_s = 0.0
    return CompileStats(
        frames=int(counters["frames"]["total"]),
        frames_ok=int(counters["frames"]["ok"]),
        graphs=int(counters["stats"]["unique_graphs"]),
        recompiles=sum(max(0, int(n) - 1) for n in per_frame.values()),
        graph_breaks=int(sum(counters["graph_break"].values())),
        compile_s=compile_s,
    )


__all__ = ["CompileStats", "compile_stats"]
