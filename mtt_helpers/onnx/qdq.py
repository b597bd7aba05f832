"""Where the static int8 graph is int8: the weight products' inputs, and nowhere else.

``quantize_static`` in QDQ form puts a QuantizeLinear -> DequantizeLinear pair on each tensor it
quantises, and *every* consumer of that tensor then reads the rounded copy. In a transformer the
LayerNorm output that feeds the next layer's query/key/value products is also the residual
stream; rounding it there adds error that dynamic quantisation never had. After quantisation,
:func:`restore_fp32_consumers` points every consumer that is not a quantised product back at the
fp32 tensor, so int8 is used exactly where the integer kernels read it.
"""

from __future__ import annotations

import onnx

QUANTISED_OP_TYPES = ("MatMul", "Gather")
"""Operators whose weight is stored as int8: the linear layers and the embedding look-ups."""


def weight_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes to quantise: each ``MatMul`` with a weight (a linear layer) and each
    ``Gather`` that looks rows up in a weight (the embeddings).

    The attention products (activation times activation) and the small task heads (``Gemm``)
    stay fp32, as under dynamic quantisation.
    """
    weights = {initializer.name for initializer in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        if node.op_type == "MatMul" and any(name in weights for name in node.input):
            nodes.append(node.name)
        elif node.op_type == "Gather" and node.input[0] in weights:
            nodes.append(node.name)
    return nodes


def restore_fp32_consumers(model: onnx.ModelProto) -> int:
    """Feeds every consumer of a quantised activation that is not a quantised operator the fp32
    tensor again, then drops the QuantizeLinear/DequantizeLinear nodes nothing reads any more.

    Args:
        model: A QDQ graph from ``quantize_static``; changed in place.

    Returns:
        How many node inputs were pointed back at fp32 tensors.
    """
    graph = model.graph
    quantised_from = {node.output[0]: node.input[0] for node in graph.node if node.op_type == "QuantizeLinear"}
    fp32_of = {node.output[0]: quantised_from[node.input[0]] for node in graph.node
               if node.op_type == "DequantizeLinear" and node.input[0] in quantised_from}
    restored = 0
    for node in graph.node:
        if node.op_type in (*QUANTISED_OP_TYPES, "QuantizeLinear", "DequantizeLinear"):
            continue
        for index, name in enumerate(node.input):
            if name in fp32_of:
                node.input[index] = fp32_of[name]
                restored += 1
    for op_type in ("DequantizeLinear", "QuantizeLinear"):  # a Q is unused once its DQs are gone
        read = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
        unused = [node for node in graph.node if node.op_type == op_type and node.output[0] not in read]
        for node in unused:
            graph.node.remove(node)
    return restored


def set_metadata(model: onnx.ModelProto, values: dict[str, str]) -> None:
    """Sets ``metadata_props`` entries (replacing those of the same keys); onnxruntime reads them
    back as ``session.get_modelmeta().custom_metadata_map``."""
    kept = [prop for prop in model.metadata_props if prop.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in values.items():
        model.metadata_props.add(key=key, value=str(value))
