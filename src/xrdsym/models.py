"""Keras 3 models, backend-agnostic (TensorFlow, JAX or PyTorch): no backend-specific calls."""

from __future__ import annotations

from typing import Any

import keras

from xrdsym.config import MODEL_INPUTS
from xrdsym.errors import XrdsymError

CNN1D_BLOCKS = ((16, 21, 2), (32, 11, 1), (64, 7, 1), (64, 5, 1), (128, 3, 1), (128, 3, 1))


def build_mobilenetv2(
    image_size: int,
    n_classes: int,
    *,
    weights: str | None,
    alpha: float,
    dropout: float,
    batchnorm_momentum: float,
) -> keras.Model:
    """The paper's classifier: MobileNetV2 with a new ``n_classes``-way head, every layer trainable.

    Args:
        image_size: side of the square RGB input in pixels; pixel values 0-255.
        n_classes: number of output classes (softmax).
        weights: None for random initialisation, "imagenet" for Keras' pretrained weights
            (downloaded once into ~/.keras/models, or read from there when cached).
        alpha: MobileNetV2's width multiplier.
        dropout: dropout rate before the new head.
        batchnorm_momentum: momentum of every BatchNormalization layer's moving statistics.
            Keras builds MobileNetV2 with 0.999, made for ImageNet-sized runs; trained from
            scratch for a few hundred steps, those statistics stay near their initial values
            and the model predicts one class at inference. 0.9 lets them follow the data.
    """
    try:
        backbone = keras.applications.MobileNetV2(
            input_shape=(image_size, image_size, 3),
            alpha=alpha,
            include_top=False,
            weights=weights,
            pooling="avg",
        )
    except ValueError as exc:
        raise XrdsymError(f"train: MobileNetV2 cannot be built: {exc}") from exc
    except Exception as exc:  # keras.utils.get_file raises several types when offline
        raise XrdsymError(
            "train.weights=imagenet: could not download MobileNetV2's ImageNet weights "
            f"({exc.__class__.__name__}); put the .h5 file in ~/.keras/models/ or set "
            "train.weights: null"
        ) from exc
    # Fine-tuning as in the paper: ImageNet features do not transfer to diffraction images.
    backbone.trainable = True
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = batchnorm_momentum
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    # MobileNetV2 expects pixels in [-1, 1] (keras.applications.mobilenet_v2.preprocess_input).
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    x = backbone(x)
    x = keras.layers.Dropout(dropout)(x)
    outputs = _head(x, n_classes)
    return keras.Model(inputs, outputs, name="mobilenetv2_crystal_system")


def build_cnn1d(n_points: int, n_classes: int, *, dropout: float) -> keras.Model:
    """A 1D CNN on the pattern vector, after Park et al. (IUCrJ 2017): wide convolutions and
    max pooling down the 2θ axis, then dense layers over the flattened feature map.

    Flattening (rather than global pooling) keeps where along 2θ each feature sits: the
    crystal system is written in the positions of the peaks relative to each other.

    Args:
        n_points: grid points of the pattern (the input is n_points x 1, values in [0, 1]).
        n_classes: number of output classes (softmax).
        dropout: dropout rate before each dense layer.
    """
    inputs = keras.Input(shape=(n_points, 1), name="pattern")
    x = inputs
    # (filters, kernel width, stride): wide first, so that a first-layer unit sees a whole
    # broadened peak; each block then halves the length again by pooling.
    for filters, width, stride in CNN1D_BLOCKS:
        x = keras.layers.Conv1D(filters, width, stride, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Dense(256, activation="relu")(x)
    x = keras.layers.Dropout(dropout)(x)
    outputs = _head(x, n_classes)
    return keras.Model(inputs, outputs, name="cnn1d_crystal_system")


def _head(x: keras.KerasTensor, n_classes: int) -> keras.KerasTensor:
    """The softmax classification head, in float32 even under mixed precision (a float16
    softmax loses the small probabilities that calibration and top-5 need)."""
    return keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name="classes")(x)


def build_model(
    name: str, input_shape: tuple[int, ...], n_classes: int, settings: dict[str, Any]
) -> keras.Model:
    """The classifier ``name`` (a key of MODEL_INPUTS) for inputs of ``input_shape`` (without
    the batch axis), configured by the ``train`` params section ``settings``."""
    if name == "mobilenetv2":
        return build_mobilenetv2(
            input_shape[0],
            n_classes,
            weights=settings["weights"],
            alpha=settings["alpha"],
            dropout=settings["dropout"],
            batchnorm_momentum=settings["batchnorm_momentum"],
        )
    if name == "cnn1d":
        return build_cnn1d(input_shape[0], n_classes, dropout=settings["dropout"])
    raise XrdsymError(f"unknown model {name!r}; known: {', '.join(MODEL_INPUTS)}")
