"""Read a TFLite flatbuffer into plain Python: the operator list and its constant tensors.

Used only when converting MediaPipe's networks to safetensors (needs the `tflite` schema package,
not TensorFlow). DEQUANTIZE ops that unpack fp16 weights are folded away: `constants` holds every
constant already in float32, keyed by the tensor index the consuming operator reads.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np

_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64}


@dataclass(frozen=True)
class TfliteOp:
    kind: str  # builtin operator name, e.g. "CONV_2D"
    inputs: tuple[int, ...]  # tensor indices (-1 marks an omitted optional input)
    outputs: tuple[int, ...]
    options: dict[str, int | float] = field(default_factory=dict)  # e.g. {"StrideH": 2, "Padding": 0}


@dataclass(frozen=True)
class TfliteGraph:
    ops: tuple[TfliteOp, ...]
    tensor_names: tuple[str, ...]
    tensor_shapes: tuple[tuple[int, ...], ...]
    constants: dict[int, np.ndarray]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def ops_of(self, kind: str) -> list[TfliteOp]:
        return [op for op in self.ops if op.kind == kind]

    def const(self, index: int) -> np.ndarray:
        if index not in self.constants:
            raise KeyError(f"tensor {index} ({self.tensor_names[index]}) is not a constant")
        return self.constants[index]


def _options(op, tflite) -> dict[str, int | float]:
    """The scalar fields of an operator's builtin options table (stride, padding, activation...)."""
    kind = op.BuiltinOptionsType()
    names = {v: k for k, v in vars(tflite.BuiltinOptions).items() if not k.startswith("_")}
    cls = getattr(tflite, names.get(kind, "NONE"), None)
    table = op.BuiltinOptions()
    if cls is None or table is None:
        return {}
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    values = {}
    for name, method in inspect.getmembers(opts, inspect.ismethod):
        if name[0].isupper() and name != "Init" and len(inspect.signature(method).parameters) == 0:
            value = method()
            if isinstance(value, (int, float)):
                values[name] = value
    return values


def read_tflite(data: bytes) -> TfliteGraph:
    import tflite  # conversion-time dependency only

    model = tflite.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() != 1:
        raise ValueError("expected a single-subgraph TFLite model")
    graph = model.Subgraphs(0)
    op_names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}

    names, shapes, raw = [], [], {}
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        names.append(t.Name().decode())
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        shapes.append(shape)
        buf = model.Buffers(t.Buffer())
        if buf.DataLength():
            payload = buf.DataAsNumpy().tobytes()
        elif buf.Offset() > 1:  # large models keep tensor data after the flatbuffer
            payload = data[buf.Offset() : buf.Offset() + buf.Size()]
        else:
            continue
        raw[i] = np.frombuffer(payload, _NUMPY_TYPES[t.Type()]).reshape(shape).copy()

    ops, constants = [], {i: a.astype(np.float32) if a.dtype == np.float16 else a for i, a in raw.items()}
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = op_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        inputs = tuple(int(i) for i in op.InputsAsNumpy())
        outputs = tuple(int(i) for i in op.OutputsAsNumpy())
        if kind == "DEQUANTIZE" and inputs[0] in constants:
            constants[outputs[0]] = constants[inputs[0]].astype(np.float32)
            continue
        ops.append(TfliteOp(kind, inputs, outputs, _options(op, tflite)))
    return TfliteGraph(
        ops=tuple(ops),
        tensor_names=tuple(names),
        tensor_shapes=tuple(shapes),
        constants=constants,
        inputs=tuple(int(i) for i in graph.InputsAsNumpy()),
        outputs=tuple(int(i) for i in graph.OutputsAsNumpy()),
    )
