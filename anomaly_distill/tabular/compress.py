"""Smaller students: int8 weights by ONNX Runtime's static quantisation, or fewer hidden units by pruning.

- prune: structured magnitude pruning. Each hidden layer keeps the units with the largest (incoming weight norm ×
  outgoing weight norm), then the narrower student is fine-tuned on the same distillation set. Removing whole
  units (not single weights) is what makes a dense MLP smaller *and* faster: zeros in a dense matrix cost the same.
- int8: the student's matrix multiplications get int8 weights (per output unit) and uint8 activations whose ranges
  are calibrated on the distillation set (real and synthetic rows). Static, not dynamic, quantisation: with
  dynamic ranges a row's score would depend on the other rows of its batch. The scaling in front stays float, and
  so does the output layer (one unit): a quantised logit would clip the most anomalous rows to one value.
  Activations beyond the calibrated ranges saturate: rows more extreme than any distillation row keep a high
  score, but their order among themselves is partly lost.

The int8 student scores through ONNX Runtime; its explanations use the same int8 weights, dequantised, in torch.
"""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from anomaly_distill.config import EngineConfig
from anomaly_distill.data import Preprocessor
from anomaly_distill.detector import size_bytes
from anomaly_distill.export import INPUT_NAME, OUTPUT_NAME, _export, add_metadata
from anomaly_distill.models.student import ScoringModel, StudentNet
from anomaly_distill.tabular.tabular_student import Student

CALIBRATION_ROWS = 20_000


def _linears(net: StudentNet) -> list[nn.Linear]:
    return [m for m in net.body if isinstance(m, nn.Linear)] + [net.head]


def hidden_widths(net: StudentNet) -> list[int]:
    return [layer.out_features for layer in _linears(net)[:-1]]


def prune_units(net: StudentNet, amount: float) -> StudentNet:
    """A copy of `net` without the share `amount` of each hidden layer's units that matter least (at least one
    unit stays), before any fine-tuning."""
    layers = _linears(net)
    keep_in = torch.arange(layers[0].in_features)
    weights, biases = [], []
    for layer, following in zip(layers[:-1], layers[1:]):
        importance = layer.weight[:, keep_in].norm(dim=1) * following.weight.norm(dim=0)
        n_keep = max(1, round(layer.out_features * (1 - amount)))
        keep = importance.topk(n_keep).indices.sort().values
        weights.append(layer.weight[keep][:, keep_in])
        biases.append(layer.bias[keep])
        keep_in = keep
    weights.append(layers[-1].weight[:, keep_in])
    biases.append(layers[-1].bias)
    pruned = StudentNet(layers[0].in_features, [len(b) for b in biases[:-1]], net.squash_scale)
    with torch.no_grad():
        for layer, weight, bias in zip(_linears(pruned), weights, biases):
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
    return pruned


def prune_student(student: Student, soft_labels: pd.DataFrame, preprocessor: Preprocessor, config: EngineConfig):
    """Pruned and fine-tuned (early stopping on the distillation set's validation part, as in distillation)."""
    # training only: loading a student (load_tabular, here) imports this module
    from anomaly_distill.distill import train_student

    start = prune_units(student.model.net, config.student.prune_amount)
    model, history = train_student(soft_labels, preprocessor, config, start=start, epochs=config.student.prune_epochs)
    return model, history


class _MatMulGraph(nn.Module):
    """The scoring model as plain MatMul + Add layers with named weights, the form ONNX Runtime quantises and
    from which `dequantised_net` reads the int8 weights back."""

    def __init__(self, model: ScoringModel):
        super().__init__()
        gain, offset, first_weight = model.folded()
        self.register_buffer("keep", model.keep.clone())
        self.drops_columns = model.drops_columns
        self.register_buffer("gain", gain.detach().clone())
        self.register_buffer("offset", offset.detach().clone())
        layers = _linears(model.net)
        self.n_layers = len(layers)
        for i, layer in enumerate(layers):
            weight = first_weight if i == 0 else layer.weight
            self.register_parameter(f"weight_{i}", nn.Parameter(weight.detach().T.contiguous()))
            self.register_parameter(f"bias_{i}", nn.Parameter(layer.bias.detach().clone()))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        if self.drops_columns:
            raw = raw.index_select(1, self.keep)
        hidden = nn.functional.softsign(raw * self.gain + self.offset)
        for i in range(self.n_layers):
            hidden = hidden @ getattr(self, f"weight_{i}") + getattr(self, f"bias_{i}")
            if i < self.n_layers - 1:
                hidden = torch.relu(hidden)
        return hidden.squeeze(1)


def quantise_graph(model: ScoringModel, calibration: np.ndarray, metadata: dict) -> bytes:
    """The int8 ONNX graph of `model`, its activation ranges calibrated on `calibration` (raw input rows)."""
    # onnx (~0.8 s, ~60 MB of RSS) only for int8 students
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(np.array_split(calibration.astype(np.float32), max(1, len(calibration) // 2000)))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    graph = _MatMulGraph(model).eval()
    with tempfile.TemporaryDirectory() as tmp:
        float_path, int8_path = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        _export(graph, torch.zeros(2, len(model.input_columns)), float_path, INPUT_NAME, {})
        head = f"weight_{graph.n_layers - 1}"
        exported = onnx.load(str(float_path))
        output_layer = [n.name for n in exported.graph.node if n.op_type == "MatMul" and head in n.input]
        quantize_static(
            str(float_path),
            str(int8_path),
            Batches(),
            quant_format=QuantFormat.QOperator,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=output_layer,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
        quantised = onnx.load(str(int8_path))
        del quantised.metadata_props[:]  # the quantiser's own notes are not JSON; OnnxScorer reads ours as JSON
        add_metadata(quantised, metadata)
        return quantised.SerializeToString()


def dequantised_net(graph: bytes, hidden: list[int], squash: float) -> StudentNet:
    """The float network whose weights are the int8 graph's weights, dequantised (for explanations)."""
    # onnx (~0.8 s, ~60 MB of RSS) only for int8 students
    import onnx
    from onnx import numpy_helper

    initializers = {t.name: numpy_helper.to_array(t) for t in onnx.load_from_string(graph).graph.initializer}
    net = StudentNet(1, hidden, squash)  # the first layer is replaced below, with the graph's input width
    layers = _linears(net)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            name = f"weight_{i}"
            if f"{name}_quantized" in initializers:
                q = initializers[f"{name}_quantized"].astype(np.float32)
                weight = (q - initializers[f"{name}_zero_point"]) * initializers[f"{name}_scale"]
            else:
                weight = initializers[name]
            weight = torch.tensor(np.array(weight.T), dtype=torch.float32)
            if i == 0:
                weight = weight / squash  # the graph's first layer has the squash factor folded in
                net.body[0] = layer = nn.Linear(weight.shape[1], weight.shape[0])
            layer.weight.copy_(weight)
            layer.bias.copy_(torch.tensor(np.array(initializers[f"bias_{i}"])))
    return net.eval()


class Int8ScoringModel(ScoringModel):
    """Scores through the int8 ONNX graph (one ONNX Runtime thread, as the float student's one torch thread);
    as a torch module it is the dequantised network, which explanations differentiate."""

    def __init__(self, input_columns, keep, center, scale, net: StudentNet, graph: bytes):
        super().__init__(input_columns, keep, center, scale, net)
        self.graph = graph
        self._session = self._open()

    def _open(self):
        # ONNX Runtime only for int8 students
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        return ort.InferenceSession(self.graph, options, providers=["CPUExecutionProvider"])

    def score(self, raw: np.ndarray, chunk_rows: int = 65_536) -> np.ndarray:
        raw = np.require(raw, np.float32, ["C"])
        parts = [
            self._session.run([OUTPUT_NAME], {INPUT_NAME: raw[i : i + chunk_rows]})[0]
            for i in range(0, len(raw), chunk_rows)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def __getstate__(self):  # an ONNX Runtime session does not pickle (Prefect persists task results)
        return {key: value for key, value in self.__dict__.items() if key != "_session"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._session = self._open()


@dataclass
class Int8Student(Student):
    """A tabular student whose registered form is the int8 graph (the float weights are not kept)."""

    def state(self) -> dict:
        model = self.model
        return {
            "input_columns": model.input_columns,
            "squash": model.net.squash_scale,
            "hidden": hidden_widths(model.net),
            "keep": model.keep,
            "center": model.center,
            "scale": model.scale,
            "graph": torch.frombuffer(bytearray(model.graph), dtype=torch.uint8),
            "threshold": self.threshold,
        }

    @classmethod
    def from_state(cls, saved: dict) -> "Int8Student":
        graph = saved["graph"].numpy().tobytes()
        net = dequantised_net(graph, saved["hidden"], saved["squash"])
        model = Int8ScoringModel(saved["input_columns"], saved["keep"], saved["center"], saved["scale"], net, graph)
        return cls(model.eval(), saved["threshold"])

    def export_onnx(self, path: str | Path) -> Path:
        # onnx (~0.8 s, ~60 MB of RSS) only for int8 students
        import onnx

        graph = onnx.load_from_string(self.model.graph)
        for prop in graph.metadata_props:
            if prop.key == "threshold":  # set again after quantisation, on the int8 scores
                prop.value = json.dumps(self.threshold)
        onnx.save(graph, str(path))
        return Path(path)


def quantise_student(student: Student, calibration_rows: pd.DataFrame, seed: int) -> Int8Student:
    model = student.model
    rows = calibration_rows[model.input_columns]
    if len(rows) > CALIBRATION_ROWS:
        rows = rows.sample(CALIBRATION_ROWS, random_state=seed)
    metadata = {"kind": "tabular", "input_columns": model.input_columns, "threshold": student.threshold}
    graph = quantise_graph(model, rows.to_numpy(dtype=np.float32), metadata)
    net = dequantised_net(graph, hidden_widths(model.net), model.net.squash_scale)
    int8 = Int8ScoringModel(model.input_columns, model.keep, model.center, model.scale, net, graph)
    return Int8Student(int8.eval(), student.threshold, student.history)


def compress_student(
    student: Student, soft_labels: pd.DataFrame, preprocessor: Preprocessor, config: EngineConfig
) -> Student:
    """`config.student.compress` applied to a distilled student (its threshold is set again by the caller)."""
    method = config.student.compress
    if method == "none":
        return student
    if method == "prune":
        model, history = prune_student(student, soft_labels, preprocessor, config)
        offset = len(student.history)  # the fine-tuning epochs continue the distillation's loss curves
        history = student.history + [{**h, "epoch": offset + h["epoch"]} for h in history]
        smaller = Student(model, student.threshold, history)
    else:
        smaller = quantise_student(student, soft_labels, config.seed)
    smaller.compressed_from = {"params": student.n_params, "size_bytes": size_bytes(student)}
    return smaller


def compression_summary(method: str, detector) -> str:
    """The model card's compression section."""
    if method == "none":
        return "none: float32 weights (PyTorch), exported to ONNX"
    what = {
        "int8": "int8: int8 weights per output unit and uint8 activations calibrated on the distillation set "
        "(ONNX Runtime static quantisation; the output layer stays float); scored by ONNX Runtime. Activations "
        "beyond the calibrated ranges saturate.",
        "prune": "prune: the least important hidden units removed (incoming × outgoing weight norm), then "
        "fine-tuned on the distillation set.",
    }[method]
    before = getattr(detector, "compressed_from", None)
    if before:
        what += (
            f" Distilled float student: {before['params']:,} parameters, {before['size_bytes']:,} bytes; "
            "the metrics above are the compressed student's."
        )
    return what


def load_tabular(saved: dict) -> Student:
    """A saved tabular student: the int8 one carries its quantised graph, the float one its weights."""
    return Int8Student.from_state(saved) if "graph" in saved else Student.from_state(saved)
