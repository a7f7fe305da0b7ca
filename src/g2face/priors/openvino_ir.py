"""Read an OpenVINO IR (version 10/11 .xml + .bin) into numpy, for weight converters.

Only the graph structure and the constant tensors are read; nothing is executed. Converters walk the
graph to find the tensors they need and check that the structure is what their module expects.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path

import numpy as np

_DTYPES = {
    "f32": np.float32,
    "f16": np.float16,
    "i64": np.int64,
    "i32": np.int32,
    "u8": np.uint8,
    "i8": np.int8,
}


@dataclass(frozen=True)
class IRNode:
    id: int
    type: str
    name: str
    inputs: tuple[tuple[int, int], ...]  # (producer id, producer output port), in input-port order
    attrs: dict[str, str]
    output_shapes: tuple[tuple[int, ...], ...]


class IRGraph:
    """Nodes, edges and constants of one IR model."""

    def __init__(self, xml_path: str | Path):
        xml_path = Path(xml_path)
        root = ET.parse(xml_path).getroot()
        self._blob = np.fromfile(xml_path.with_suffix(".bin"), dtype=np.uint8)
        sources = {
            (int(e.get("to-layer")), int(e.get("to-port"))): (
                int(e.get("from-layer")),
                int(e.get("from-port")),
            )
            for e in root.find("edges")
        }
        self.nodes: dict[int, IRNode] = {}
        for layer in root.find("layers"):
            node_id = int(layer.get("id"))
            in_ports = layer.find("input")
            ports = sorted(int(p.get("id")) for p in in_ports.findall("port")) if in_ports is not None else []
            out_ports = layer.find("output")
            shapes = tuple(
                tuple(int(d.text) for d in p.findall("dim"))
                for p in (out_ports if out_ports is not None else [])
            )
            data = layer.find("data")
            self.nodes[node_id] = IRNode(
                id=node_id,
                type=layer.get("type"),
                name=layer.get("name"),
                inputs=tuple(sources[(node_id, p)] for p in ports),
                attrs=dict(data.attrib) if data is not None else {},
                output_shapes=shapes,
            )
        sorter = TopologicalSorter({n.id: [src for src, _ in n.inputs] for n in self.nodes.values()})
        self.order: list[int] = list(sorter.static_order())

    def ops(self, *types: str) -> list[IRNode]:
        """Nodes of the given types, in a topological order."""
        return [self.nodes[i] for i in self.order if self.nodes[i].type in types]

    def input(self, node: IRNode, index: int) -> IRNode:
        return self.nodes[node.inputs[index][0]]

    def const(self, node: IRNode) -> np.ndarray:
        if node.type != "Const":
            raise ValueError(f"IR node {node.name!r} is a {node.type}, not a Const")
        offset, size = int(node.attrs["offset"]), int(node.attrs["size"])
        shape = [int(s) for s in node.attrs["shape"].split(",")] if node.attrs.get("shape") else []
        raw = self._blob[offset : offset + size].tobytes()
        return np.frombuffer(raw, dtype=_DTYPES[node.attrs["element_type"]]).reshape(shape).copy()

    def const_input(self, node: IRNode) -> np.ndarray | None:
        """The single constant input of a binary op, or None when it has none."""
        consts = [self.input(node, i) for i in range(len(node.inputs)) if self.input(node, i).type == "Const"]
        return self.const(consts[0]) if len(consts) == 1 else None
