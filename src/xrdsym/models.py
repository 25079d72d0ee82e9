"""Keras 3 models, backend-agnostic (TensorFlow, JAX or PyTorch): no backend-specific calls."""

from __future__ import annotations

from typing import Any

import keras

from xrdsym.config import MODEL_INPUTS
from xrdsym.errors import XrdsymError
from xrdsym.inference import PRIMARY_HEAD

CNN1D_BLOCKS = ((16, 21, 2), (32, 11, 1), (64, 7, 1), (64, 5, 1), (128, 3, 1), (128, 3, 1))
# resnet1d: the stem (filters, kernel width, stride), then each stage's (filters, kernel width)
# at lengths n/4, n/8, n/16, n/32: about twice cnn1d's multiply-adds with one block per stage.
RESNET1D_STEM = (24, 15, 2)
RESNET1D_STAGES = ((24, 7), (48, 5), (96, 5), (128, 3))


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
    return keras.Model(inputs, _heads(x, {PRIMARY_HEAD: n_classes}), name="mobilenetv2")


def build_cnn1d(n_points: int, heads: dict[str, int], *, dropout: float) -> keras.Model:
    """A 1D CNN on the pattern vector, after Park et al. (IUCrJ 2017): wide convolutions and
    max pooling down the input axis, then dense layers over the flattened feature map.

    Flattening (rather than global pooling) keeps where along the axis each feature sits: the
    crystal system is written in the positions of the peaks relative to each other.

    Args:
        n_points: grid points of the pattern (the input is n_points x 1, values in [0, 1]).
        heads: softmax heads, name -> number of classes (see :func:`_heads`).
        dropout: dropout rate before each dense layer.
    """
    inputs = keras.Input(shape=(n_points, 1), name="pattern")
    x = inputs
    # (filters, kernel width, stride): wide first, so that a first-layer unit sees a whole
    # broadened peak; each block then halves the length again by pooling.
    for filters, width, stride in CNN1D_BLOCKS:
        x = _conv_bn(x, filters, width, stride)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling1D(2)(x)
    return keras.Model(inputs, _heads(_dense_top(x, dropout), heads), name="cnn1d")


def build_resnet1d(
    n_points: int, heads: dict[str, int], *, dropout: float, blocks_per_stage: int
) -> keras.Model:
    """A residual 1D network (He et al. 2016, basic blocks, after the 1D ResNets and ConvNeXts
    of recent XRD work): a wide stem, four stages of residual blocks that halve the length and
    widen the channels, then the dense top of :func:`build_cnn1d` over the flattened map.

    Args:
        n_points: grid points of the pattern (the input is n_points x 1).
        heads: softmax heads, name -> number of classes (see :func:`_heads`).
        dropout: dropout rate before each dense layer.
        blocks_per_stage: residual blocks in each of the four stages.
    """
    inputs = keras.Input(shape=(n_points, 1), name="pattern")
    stem_filters, stem_width, stem_stride = RESNET1D_STEM
    x = keras.layers.Activation("relu")(_conv_bn(inputs, stem_filters, stem_width, stem_stride))
    x = keras.layers.MaxPooling1D(2)(x)
    for stage, (filters, width) in enumerate(RESNET1D_STAGES):
        for block in range(blocks_per_stage):
            # The first block of every stage but the first halves the length.
            x = _residual_block(x, filters, width, 2 if stage and not block else 1)
    # Down to the length of cnn1d's last map before flattening: the dense layer's size stays
    # that of cnn1d's, whatever the depth.
    x = keras.layers.MaxPooling1D(4)(x)
    return keras.Model(inputs, _heads(_dense_top(x, dropout), heads), name="resnet1d")


def _conv_bn(x: keras.KerasTensor, filters: int, width: int, stride: int) -> keras.KerasTensor:
    """Convolution without bias (batch normalisation brings its own shift), then batch norm."""
    x = keras.layers.Conv1D(filters, width, stride, padding="same", use_bias=False)(x)
    return keras.layers.BatchNormalization()(x)


def _residual_block(
    x: keras.KerasTensor, filters: int, width: int, stride: int
) -> keras.KerasTensor:
    """Two convolutions with a skip connection; a 1 x 1 convolution matches the skip to the
    new length and channels where the block changes them."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, stride)
    y = keras.layers.Activation("relu")(_conv_bn(x, filters, width, stride))
    y = _conv_bn(y, filters, width, 1)
    return keras.layers.Activation("relu")(keras.layers.Add()([shortcut, y]))


def _dense_top(x: keras.KerasTensor, dropout: float) -> keras.KerasTensor:
    """Flatten, dropout, a 256-unit dense layer, dropout: what every 1D model's heads read."""
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Dense(256, activation="relu")(x)
    return keras.layers.Dropout(dropout)(x)


def _heads(
    x: keras.KerasTensor, heads: dict[str, int]
) -> keras.KerasTensor | dict[str, keras.KerasTensor]:
    """One softmax head per entry of ``heads`` (name -> classes; the first is the model's
    target, named ``classes``), in float32 even under mixed precision (a float16 softmax
    loses the small probabilities that calibration and top-5 need). One head is the model's
    output itself, several a dict by name (Keras then trains each with its own loss)."""
    outputs = {
        name: keras.layers.Dense(n, activation="softmax", dtype="float32", name=name)(x)
        for name, n in heads.items()
    }
    return next(iter(outputs.values())) if len(outputs) == 1 else outputs


def build_model(
    name: str, input_shape: tuple[int, ...], heads: dict[str, int], settings: dict[str, Any]
) -> keras.Model:
    """The classifier ``name`` (a key of MODEL_INPUTS) for inputs of ``input_shape`` (without
    the batch axis) with the softmax ``heads`` (name -> classes, the target's first),
    configured by the ``train`` params section ``settings``."""
    if name == "mobilenetv2":
        if len(heads) > 1:
            raise XrdsymError("mobilenetv2 has one head; train.space_group_head is for 1D models")
        return build_mobilenetv2(
            input_shape[0],
            heads[PRIMARY_HEAD],
            weights=settings["weights"],
            alpha=settings["alpha"],
            dropout=settings["dropout"],
            batchnorm_momentum=settings["batchnorm_momentum"],
        )
    if name == "cnn1d":
        return build_cnn1d(input_shape[0], heads, dropout=settings["dropout"])
    if name == "resnet1d":
        return build_resnet1d(
            input_shape[0],
            heads,
            dropout=settings["dropout"],
            blocks_per_stage=settings["resnet_blocks"],
        )
    raise XrdsymError(f"unknown model {name!r}; known: {', '.join(MODEL_INPUTS)}")
