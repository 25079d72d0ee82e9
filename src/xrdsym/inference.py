"""Keras-free inference: a trained layer stack exported to numpy arrays and run with numpy.

Loading Keras (and TensorFlow or JAX behind it) takes seconds, longer than classifying a
pattern, so ``xrdsym predict`` runs exported models with numpy alone. A graph of the layers the 1D
models use (:data:`SUPPORTED_LAYERS`: chains, residual additions, several softmax heads) is
exported; any other model is run by Keras. Keras stays the reference: tests compare both on
the same inputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from xrdsym.errors import XrdsymError

INFERENCE_FILE = "inference.npz"
SUPPORTED_LAYERS = (
    "InputLayer",
    "Conv1D",
    "BatchNormalization",
    "Activation",
    "MaxPooling1D",
    "Flatten",
    "Dropout",
    "Dense",
    "Add",
)
# Output names: the target's softmax head, and the space-group head a 1D model may have besides.
PRIMARY_HEAD = "classes"
SPACE_GROUP_HEAD = "space_group"


def head_outputs(outputs: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A model's outputs by head name, whether it has one (its output array is the target
    head's) or several (a dict already), from Keras or from :class:`NumpyModel`."""
    return outputs if isinstance(outputs, dict) else {PRIMARY_HEAD: outputs}


# Patterns per forward pass: bounds the memory of the unfolded convolution inputs.
INFERENCE_BATCH = 64


def export_layers(model: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The graph of ``model`` (a keras.Model): each layer's specification with the indices of
    the layers it reads, and the output layers by name; and the weights. XrdsymError when a
    layer is not one of :data:`SUPPORTED_LAYERS` with channels-last data, or is used twice."""
    specs, arrays = [], {}
    index_of = {layer.name: index for index, layer in enumerate(model.layers)}
    for index, layer in enumerate(model.layers):
        kind = layer.__class__.__name__
        if kind not in SUPPORTED_LAYERS:
            raise XrdsymError(f"layer {layer.name} ({kind}) has no numpy inference")
        if index > 0 and len(layer._inbound_nodes) != 1:
            raise XrdsymError(f"layer {layer.name} is used more than once")
        config = layer.get_config()
        if config.get("data_format", "channels_last") != "channels_last":
            raise XrdsymError(f"layer {layer.name} is not channels_last")
        inbound = layer._inbound_nodes[0].input_tensors if index > 0 else []
        # model.layers is in an order where every layer comes after the ones it reads.
        spec: dict[str, Any] = {
            "kind": kind,
            "inputs": [index_of[t._keras_history.operation.name] for t in inbound],
        }
        if kind == "Conv1D":
            if config["dilation_rate"] not in ((1,), [1], 1) or config["groups"] != 1:
                raise XrdsymError(f"layer {layer.name}: dilated or grouped convolution")
            spec |= {
                "strides": _single(config["strides"]),
                "padding": config["padding"],
            }
        elif kind == "MaxPooling1D":
            spec |= {
                "pool_size": _single(config["pool_size"]),
                "strides": _single(config["strides"] or config["pool_size"]),
                "padding": config["padding"],
            }
        elif kind == "BatchNormalization":
            if config["axis"] not in (-1, [-1]):
                raise XrdsymError(f"layer {layer.name}: batch normalisation not on the last axis")
            spec["epsilon"] = config["epsilon"]
        if "activation" in config:
            if config["activation"] not in ACTIVATIONS:
                name = config["activation"]
                raise XrdsymError(f"layer {layer.name}: no numpy inference for activation {name}")
            spec["activation"] = config["activation"]
        for weight in layer.weights:
            name = weight.path.rsplit("/", 1)[-1]
            arrays[f"{index}/{name}"] = np.asarray(weight.numpy(), dtype=np.float32)
        specs.append(spec)
    outputs = model.outputs
    graph = {
        "layers": specs,
        # Several heads come back as a dict by name, one as the array itself (as Keras does).
        "outputs": {
            t._keras_history.operation.name: index_of[t._keras_history.operation.name]
            for t in outputs
        },
        "named_outputs": isinstance(model.output, dict),
    }
    return graph, arrays


def _single(value: Any) -> int:
    return int(value[0] if isinstance(value, list | tuple) else value)


def save_inference(model: Any, path: Path) -> bool:
    """Write ``model``'s numpy export to ``path``; False (nothing written) when it has none."""
    try:
        graph, arrays = export_layers(model)
    except XrdsymError:
        return False
    np.savez(path, __specs__=np.array(json.dumps(graph)), **arrays)
    return True


class NumpyModel:
    """A model exported by :func:`save_inference`, run with numpy (float32)."""

    def __init__(self, graph: dict[str, Any] | list[dict[str, Any]], arrays: dict[str, np.ndarray]):
        if isinstance(graph, list):  # an export from before graphs: a chain, the last layer out
            graph = {
                "layers": [spec | {"inputs": [i - 1] if i else []} for i, spec in enumerate(graph)],
                "outputs": {PRIMARY_HEAD: len(graph) - 1},
                "named_outputs": False,
            }
        specs = graph["layers"]
        weights: list[dict[str, np.ndarray]] = [{} for _ in specs]
        for key, array in arrays.items():
            index, name = key.split("/", 1)
            weights[int(index)][name] = array
        self._steps = [_step(spec, w) for spec, w in zip(specs, weights, strict=True)]
        self._inputs = [spec["inputs"] for spec in specs]
        self._outputs: dict[str, int] = graph["outputs"]
        self._named = graph["named_outputs"]

    @classmethod
    def load(cls, path: Path) -> NumpyModel:
        """Read an export; XrdsymError when the file is unreadable."""
        try:
            with np.load(path) as data:
                arrays = {name: data[name] for name in data.files}
            graph = json.loads(str(arrays.pop("__specs__")))
        except (OSError, ValueError, KeyError) as exc:
            raise XrdsymError(
                f"{path}: unreadable model export ({exc.__class__.__name__})"
            ) from exc
        return cls(graph, arrays)

    def _forward(self, x: np.ndarray) -> dict[str, np.ndarray]:
        values: list[np.ndarray] = []
        for step, reads in zip(self._steps, self._inputs, strict=True):
            values.append(step(*[values[i] for i in reads]) if reads else step(x))
        return {name: values[index] for name, index in self._outputs.items()}

    def predict(self, inputs: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        """The model's outputs for ``inputs`` (batch first), computed in batches: the array,
        or a dict of arrays by output name for a model with several heads (as Keras gives)."""
        inputs = np.asarray(inputs, dtype=np.float32)
        batches = [
            self._forward(inputs[start : start + INFERENCE_BATCH])
            for start in range(0, len(inputs), INFERENCE_BATCH)
        ]
        outputs = {
            name: np.concatenate([batch[name] for batch in batches])
            if batches
            else np.zeros((0,), np.float32)
            for name in self._outputs
        }
        return outputs if self._named else next(iter(outputs.values()))


def _step(spec: dict[str, Any], weights: dict[str, np.ndarray]) -> Callable:
    kind = spec["kind"]
    if kind in ("InputLayer", "Dropout"):  # dropout does nothing at inference
        return lambda x: x
    if kind == "Flatten":
        return lambda x: x.reshape(len(x), -1)
    if kind == "Add":
        return lambda *xs: np.sum(xs, axis=0)
    if kind == "Activation":
        return ACTIVATIONS[spec["activation"]]
    if kind == "Dense":
        kernel, bias = weights["kernel"], weights.get("bias")
        activation = ACTIVATIONS[spec["activation"]]
        return lambda x: activation(x @ kernel + (0 if bias is None else bias))
    if kind == "BatchNormalization":
        scale = weights.get("gamma", 1.0) / np.sqrt(weights["moving_variance"] + spec["epsilon"])
        shift = weights.get("beta", 0.0) - weights["moving_mean"] * scale
        return lambda x: x * scale + shift
    if kind == "Conv1D":
        return lambda x: _conv1d(x, weights["kernel"], weights.get("bias"), spec)
    if kind == "MaxPooling1D":
        return lambda x: _max_pool1d(x, spec)
    raise XrdsymError(f"no numpy inference for {kind} layers")


def _same_padding(x: np.ndarray, width: int, stride: int, fill: float = 0.0) -> np.ndarray:
    """Pad the steps axis as Keras' "same" does: ceil(n / stride) outputs, the odd extra value
    at the end."""
    n = x.shape[1]
    total = max((-(-n // stride) - 1) * stride + width - n, 0)
    return np.pad(x, ((0, 0), (total // 2, total - total // 2), (0, 0)), constant_values=fill)


def _conv1d(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None, spec: dict) -> np.ndarray:
    width, channels, filters = kernel.shape
    stride = spec["strides"]
    if spec["padding"] == "same":
        x = _same_padding(x, width, stride)
    # windows: (batch, steps, channels, width); the kernel as (channels * width, filters)
    windows = sliding_window_view(x, width, axis=1)[:, ::stride]
    batch, steps = windows.shape[:2]
    flat = windows.reshape(batch * steps, channels * width)
    out = (flat @ kernel.transpose(1, 0, 2).reshape(channels * width, filters)).reshape(
        batch, steps, filters
    )
    if bias is not None:
        out += bias
    return ACTIVATIONS[spec["activation"]](out)


def _max_pool1d(x: np.ndarray, spec: dict) -> np.ndarray:
    size, stride = spec["pool_size"], spec["strides"]
    if spec["padding"] == "same":
        x = _same_padding(x, size, stride, fill=-np.inf)
    return sliding_window_view(x, size, axis=1)[:, ::stride].max(axis=-1)


def _softmax(x: np.ndarray) -> np.ndarray:
    exp = np.exp(x - x.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "softmax": _softmax,
}
