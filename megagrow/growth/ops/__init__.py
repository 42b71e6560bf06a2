"""Growth operators: pure functions on :class:`~megagrow.state.FullState` and layer maps.

Only stdlib, numpy, torch and ``megagrow.state`` are imported by this package.
"""

from megagrow.growth.ops.bert2bert import aki_width, bert2bert, fpi_width, unit_map, width_maps
from megagrow.growth.ops.depth import (
    DEPTH_MAP_KINDS,
    MOMENT_MODES,
    block_slots,
    expand_depth,
    interpolation_map,
    layer_map,
    remap_depth,
    split_block_name,
    stacking_map,
)
from megagrow.growth.ops.msg import MsgMasks, msg_grow, msg_layernorm, msg_mask
from megagrow.growth.ops.multilevel import (
    coalesce,
    coalesce_depth,
    coalesce_width,
    decoalesce,
    decoalesce_depth,
    decoalesce_width,
    interpolate,
)
from megagrow.growth.ops.stacking import stack_depth

__all__ = [
    "MsgMasks",
    "aki_width",
    "bert2bert",
    "fpi_width",
    "msg_grow",
    "msg_layernorm",
    "msg_mask",
    "unit_map",
    "width_maps",
    "DEPTH_MAP_KINDS",
    "MOMENT_MODES",
    "block_slots",
    "coalesce",
    "coalesce_depth",
    "coalesce_width",
    "decoalesce",
    "decoalesce_depth",
    "decoalesce_width",
    "expand_depth",
    "interpolate",
    "interpolation_map",
    "layer_map",
    "remap_depth",
    "split_block_name",
    "stack_depth",
    "stacking_map",
]
