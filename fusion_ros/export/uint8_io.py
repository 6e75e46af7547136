"""The student with 8-bit image input and output inside the graph (a measured variant, not shipped).

The node converts the RGB image to the network's (1, 3, H, W) float32 in [0, 1] before the network and the fused
result back to (H, W, 3) uint8 after it (``fusion_ros.pipeline.fuser.to_chw`` / ``from_chw``). This graph does
the same inside ONNX Runtime: ``visible_u8`` (1, H, W, 3) uint8 in, ``fused_u8`` (1, H, W, 3) uint8 out (x 255,
rounded half to even, saturated, as ``from_chw``); thermal and memory are unchanged (the thermal input is the AGC's
float output). ``fusion-ros bench --uint8-io`` compares it with the float graph plus the node's conversions.
"""

from __future__ import annotations

import numpy as np

__all__ = ["with_uint8_io", "VISIBLE_U8", "FUSED_U8"]

VISIBLE_U8 = "visible_u8"
FUSED_U8 = "fused_u8"


def with_uint8_io(model):
    """A copy of an exported student (``onnx.ModelProto``) with uint8 HWC visible input and fused output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    visible = next(i for i in g.input if i.name == "visible")
    fused = next(o for o in g.output if o.name == "fused")
    h, w = (visible.type.tensor_type.shape.dim[k] for k in (2, 3))
    # The float graph's input becomes an internal value computed from the new uint8 input.
    g.input.remove(visible)
    g.input.insert(1, helper.make_tensor_value_info(VISIBLE_U8, TensorProto.UINT8, [1, _dim(h), _dim(w), 3]))
    g.initializer.extend([numpy_helper.from_array(np.array(1 / 255, np.float32), "u8io_inv255"),
                          numpy_helper.from_array(np.array(255, np.float32), "u8io_255"),
                          numpy_helper.from_array(np.array(0, np.float32), "u8io_0")])
    head = [helper.make_node("Cast", [VISIBLE_U8], ["u8io_vis_f"], to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["u8io_vis_f"], ["u8io_vis_chw"], perm=[0, 3, 1, 2]),
            helper.make_node("Mul", ["u8io_vis_chw", "u8io_inv255"], ["visible"])]
    tail = [helper.make_node("Mul", ["fused", "u8io_255"], ["u8io_fused_255"]),
            helper.make_node("Round", ["u8io_fused_255"], ["u8io_fused_round"]),
            helper.make_node("Clip", ["u8io_fused_round", "u8io_0", "u8io_255"], ["u8io_fused_clip"]),
            helper.make_node("Cast", ["u8io_fused_clip"], ["u8io_fused_u8"], to=TensorProto.UINT8),
            helper.make_node("Transpose", ["u8io_fused_u8"], [FUSED_U8], perm=[0, 2, 3, 1])]
    nodes = head + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    g.output.remove(fused)
    g.output.insert(0, helper.make_tensor_value_info(FUSED_U8, TensorProto.UINT8, [1, _dim(h), _dim(w), 3]))
    onnx.checker.check_model(m)
    return m


def _dim(d):
    return d.dim_param if d.dim_param else d.dim_value
