import socket

import keras
import numpy as np
import pytest

from xrdsym.errors import XrdsymError
from xrdsym.models import build_cnn1d, build_mobilenetv2, build_model, build_resnet1d


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


def test_cnn1d_reads_a_pattern_and_gives_probabilities():
    model = build_cnn1d(4501, {"classes": 7}, dropout=0.3)
    assert model.input_shape == (None, 4501, 1) and model.output_shape == (None, 7)
    probabilities = model.predict(np.random.default_rng(0).random((3, 4501, 1)), verbose=0)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("blocks", [1, 2])
def test_resnet1d_has_residual_stages_and_two_heads(blocks):
    model = build_resnet1d(
        4501, {"classes": 7, "space_group": 230}, dropout=0.3, blocks_per_stage=blocks
    )
    assert model.input_shape == (None, 4501, 1)
    assert {name: out.shape[-1] for name, out in model.output.items()} == {
        "classes": 7,
        "space_group": 230,
    }
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 4 * blocks
    outputs = model.predict(np.random.default_rng(0).random((2, 4501, 1)), verbose=0)
    for probabilities in outputs.values():
        assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    # The flattened map is cnn1d's size (35 x 128): the dense layer does not grow with depth.
    flatten = next(layer for layer in model.layers if isinstance(layer, keras.layers.Flatten))
    assert flatten.output.shape[1] == 35 * 128


def test_build_model_dispatches_on_the_name():
    settings = {
        "weights": None,
        "alpha": 0.35,
        "dropout": 0.1,
        "batchnorm_momentum": 0.9,
        "resnet_blocks": 1,
    }
    assert build_model("cnn1d", (901, 1), {"classes": 3}, settings).name == "cnn1d"
    assert build_model("resnet1d", (901, 1), {"classes": 3}, settings).name == "resnet1d"
    image = build_model("mobilenetv2", (32, 32, 3), {"classes": 3}, settings)
    assert image.output_shape == (None, 3)
    with pytest.raises(XrdsymError, match="mobilenetv2 has one head"):
        build_model("mobilenetv2", (32, 32, 3), {"classes": 3, "space_group": 9}, settings)
    with pytest.raises(XrdsymError, match="unknown model"):
        build_model("resnet", (32, 32, 3), {"classes": 3}, settings)
