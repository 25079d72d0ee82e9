import socket

import keras
import numpy as np
import pytest

from xrdsym.errors import XrdsymError
from xrdsym.models import build_mobilenetv2


def test_mobilenetv2_with_a_new_head_all_layers_trainable():
    model = build_mobilenetv2(32, 7, weights=None, alpha=0.35, dropout=0.2, batchnorm_momentum=0.9)
    assert model.output_shape == (None, 7)
    assert all(layer.trainable for layer in model.layers)
    assert model.count_params() == sum(
        int(np.prod(w.shape)) for w in model.trainable_weights
    ) + sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    probabilities = model.predict(np.zeros((2, 32, 32, 3), dtype=np.uint8), verbose=0)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_too_small_image_is_one_clear_error():
    with pytest.raises(XrdsymError, match="MobileNetV2 cannot be built"):
        build_mobilenetv2(16, 7, weights=None, alpha=0.35, dropout=0.2, batchnorm_momentum=0.9)


def test_imagenet_weights_offline_fail_with_one_line(tmp_path, monkeypatch):
    # No cached weights and no network: the download must fail with the project's own error.
    # Keras reads KERAS_HOME once at import; point its cache at an empty folder instead.
    monkeypatch.setattr(keras.src.backend.config, "_KERAS_DIR", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", offline)
    monkeypatch.setattr(socket.socket, "connect", offline)
    with pytest.raises(XrdsymError) as error:
        build_mobilenetv2(
            96, 7, weights="imagenet", alpha=0.35, dropout=0.2, batchnorm_momentum=0.9
        )
    message = str(error.value)
    assert "train.weights=imagenet" in message and "weights: null" in message
    assert "\n" not in message


def test_batchnorm_momentum_is_applied_everywhere():
    model = build_mobilenetv2(32, 3, weights=None, alpha=0.35, dropout=0.0, batchnorm_momentum=0.8)
    backbone = model.get_layer("mobilenetv2_0.35_32")
    norms = [
        layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert norms and all(layer.momentum == 0.8 for layer in norms)
