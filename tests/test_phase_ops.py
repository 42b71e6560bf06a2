"""benchmarks/phase_ops.py's trace arithmetic: self times of nested profiler events and op categories."""

from __future__ import annotations

from benchmarks import phase_ops as po


def _ev(name: str, ts: float, dur: float, tid: int = 1) -> dict:
    return {"ph": "X", "cat": "cpu_op", "name": name, "ts": ts, "dur": dur, "pid": 1, "tid": tid}


def test_self_time_subtracts_direct_children_only_per_thread() -> None:
    trace = {"traceEvents": [
        _ev("linear", 0, 10), _ev("addmm", 1, 4), _ev("copy_", 2, 1), _ev("addmm", 6, 3),
        _ev("linear", 0, 5, tid=2),  # another thread: not a child of the first linear
        {"ph": "X", "cat": "user_annotation", "name": "megagrow.forward", "ts": 0, "dur": 20, "pid": 1, "tid": 1},
    ]}
    assert po.self_times(trace) == {"linear": 3 + 5, "addmm": 3 + 3, "copy_": 1}


def test_categories() -> None:
    assert po.categorize("aten::mm") == "matmul"
    assert po.categorize("aten::_log_softmax_backward_data") == "vocab softmax + loss"
    assert po.categorize("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert po.categorize("aten::_foreach_addcdiv_") == "optimizer"
    assert po.categorize("aten::native_layer_norm_backward") == "layer norm"
    assert po.categorize("aten::copy_") == "copies, fills, views"
    assert po.categorize("aten::something_new") == "other"
