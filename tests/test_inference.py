"""The numpy forward pass against Keras on the same model and inputs."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from xrdsym.errors import XrdsymError
from xrdsym.inference import NumpyModel, export_layers, save_inference
from xrdsym.models import build_cnn1d, build_resnet1d


def _randomise_batchnorm(model: keras.Model, rng: np.random.Generator) -> None:
    """Moving statistics away from 0 and 1, so that a wrong formula shows."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, channels))
            layer.beta.assign(rng.normal(0, 0.2, channels))
            layer.moving_mean.assign(rng.normal(0, 0.2, channels))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, channels))


def _flatten_output(model: keras.Model) -> keras.Model:
    """The flattened feature map before the dense layers: large, input-dependent values, where
    the softmax of an untrained model would be nearly uniform whatever the pass computed."""
    flatten = next(layer for layer in model.layers if isinstance(layer, keras.layers.Flatten))
    return keras.Model(model.inputs, flatten.output)


@pytest.mark.parametrize(
    ("build", "n_points"),
    [
        (lambda n, heads: build_cnn1d(n, heads, dropout=0.3), 451),  # odd and even lengths:
        (lambda n, heads: build_cnn1d(n, heads, dropout=0.3), 500),  # "same" padding
        (lambda n, heads: build_resnet1d(n, heads, dropout=0.3, blocks_per_stage=2), 451),
        (lambda n, heads: build_resnet1d(n, heads, dropout=0.3, blocks_per_stage=1), 500),
    ],
)
def test_1d_models_match_keras(tmp_path, build, n_points):
    rng = np.random.default_rng(0)
    model = build(n_points, {"classes": 7, "space_group": 230})
    _randomise_batchnorm(model, rng)
    patterns = rng.random((5, n_points, 1)).astype(np.float32)

    features = _flatten_output(model)
    assert save_inference(features, tmp_path / "features.npz")
    np.testing.assert_allclose(
        NumpyModel.load(tmp_path / "features.npz").predict(patterns),
        features.predict(patterns, verbose=0),
        rtol=1e-4,
        atol=1e-5,
    )
    assert save_inference(model, tmp_path / "inference.npz")
    expected = model.predict(patterns, verbose=0)
    actual = NumpyModel.load(tmp_path / "inference.npz").predict(patterns)
    assert set(actual) == {"classes", "space_group"}
    for head in expected:
        assert actual[head].shape == expected[head].shape
        np.testing.assert_allclose(actual[head], expected[head], rtol=1e-4, atol=1e-5)
        assert np.ptp(expected[head]) > 0  # the softmax still differs between patterns


def test_one_head_is_the_output_itself(tmp_path):
    model = build_resnet1d(300, {"classes": 3}, dropout=0.0, blocks_per_stage=1)
    patterns = np.random.default_rng(1).random((4, 300, 1)).astype(np.float32)

    assert save_inference(model, tmp_path / "inference.npz")
    actual = NumpyModel.load(tmp_path / "inference.npz").predict(patterns)
    np.testing.assert_allclose(actual, model.predict(patterns, verbose=0), atol=1e-5)


def test_chain_export_from_before_graphs_loads(tmp_path):
    """Exports written before graphs (the model shipped then): a list of layer specs."""
    model = build_cnn1d(200, {"classes": 3}, dropout=0.0)
    _randomise_batchnorm(model, np.random.default_rng(2))
    graph, arrays = export_layers(model)
    chain = [{k: v for k, v in spec.items() if k != "inputs"} for spec in graph["layers"]]
    np.savez(tmp_path / "old.npz", __specs__=np.array(json.dumps(chain)), **arrays)
    patterns = np.random.default_rng(3).random((4, 200, 1)).astype(np.float32)

    np.testing.assert_allclose(
        NumpyModel.load(tmp_path / "old.npz").predict(patterns),
        model.predict(patterns, verbose=0),
        atol=1e-5,
    )


def test_model_with_other_layers_is_not_exported(tmp_path):
    inputs = keras.Input(shape=(32, 1))
    x = keras.layers.Conv1D(4, 3)(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))

    assert not save_inference(model, tmp_path / "inference.npz")
    assert not (tmp_path / "inference.npz").exists()


def test_unsupported_activation_is_not_exported(tmp_path):
    inputs = keras.Input(shape=(32, 1))
    x = keras.layers.Conv1D(4, 3, activation="gelu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))

    assert not save_inference(model, tmp_path / "inference.npz")


def test_unreadable_export_is_one_error(tmp_path):
    path = tmp_path / "inference.npz"
    path.write_bytes(b"not a zip file")

    with pytest.raises(XrdsymError, match="unreadable model export"):
        NumpyModel.load(path)
