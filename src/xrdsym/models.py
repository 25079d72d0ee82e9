"""Keras 3 models, backend-agnostic (TensorFlow, JAX or PyTorch): no backend-specific calls."""

from __future__ import annotations

import keras

from xrdsym.errors import XrdsymError


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
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="crystal_system")(x)
    return keras.Model(inputs, outputs, name="mobilenetv2_crystal_system")
