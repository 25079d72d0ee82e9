"""The numpy forward pass against Keras on the same model and inputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from xrdsym.errors import XrdsymError
from xrdsym.inference import NumpyModel, save_inference
from xrdsym.models import build_cnn1d


def _randomise_batchnorm(model: keras.Model, rng: np.random.Generator) -> None:
    """Moving statistics away from 0 and 1, so that a wrong formula shows."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, channels))
            layer.beta.assign(rng.normal(0, 0.2, channels))
            layer.moving_mean.assign(rng.normal(0, 0.2, channels))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, channels))


@pytest.mark.parametrize("n_points", [451, 500])  # odd and even lengths: "same" padding
def test_cnn1d_matches_keras(tmp_path, n_points):
    rng = np.random.default_rng(0)
    model = build_cnn1d(n_points, 7, dropout=0.3)
    _randomise_batchnorm(model, rng)
    patterns = rng.random((5, n_points, 1)).astype(np.float32)
    # The flattened feature map before the dense layers: large, input-dependent values, where
    # the softmax of an untrained model would be nearly uniform whatever the pass computed.
    features = keras.Model(model.inputs, model.get_layer(index=-5).output)
    assert isinstance(features.layers[-1], keras.layers.Flatten)

    for tested, name in ((features, "features.npz"), (model, "inference.npz")):
        assert save_inference(tested, tmp_path / name)
        expected = tested.predict(patterns, verbose=0)
        actual = NumpyModel.load(tmp_path / name).predict(patterns)
        assert actual.shape == expected.shape
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)
    assert np.ptp(expected) > 0  # the softmax still differs between patterns


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
