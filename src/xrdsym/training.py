"""Training loop: Keras ``fit`` on in-memory arrays or on batches made fresh every epoch,
logged to DVCLive, backend-agnostic."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import keras
import numpy as np

from xrdsym.inference import PRIMARY_HEAD

if TYPE_CHECKING:
    from dvclive import Live

# What the learning rate is multiplied by when the validation loss stops improving (with
# TrainSettings.learning_rate_patience): halving, the usual step of a plateau schedule.
LEARNING_RATE_FACTOR = 0.5
# Class indices of samples: one array for a one-head model, a dict of arrays by head name.
Labels = np.ndarray | dict[str, np.ndarray]


def select_labels(labels: Labels, positions: np.ndarray) -> Labels:
    """The labels of the samples at ``positions``, in the same form."""
    if isinstance(labels, dict):
        return {head: values[positions] for head, values in labels.items()}
    return labels[positions]


def head_labels(labels: Labels, head: str = PRIMARY_HEAD) -> np.ndarray:
    """The class indices of ``head`` (those of a one-head model's whatever the name)."""
    return labels[head] if isinstance(labels, dict) else labels


def sample_weights(labels: np.ndarray, class_weight: dict[int, float] | None) -> np.ndarray:
    """Each sample's loss weight, its class's in ``class_weight`` (None: 1 for all). Weights
    go to Keras per sample, not per class: Keras takes class weights for one-output models
    only, and these weigh every head's loss by the sample's target class."""
    if class_weight is None:
        return np.ones(len(labels), np.float32)
    table = np.array([class_weight[i] for i in range(len(class_weight))], np.float32)
    return table[labels]


class DVCLiveLogger(keras.callbacks.Callback):
    """Logs every epoch's metrics to DVCLive as ``train/<name>`` and ``val/<name>``.

    DVCLive's own ``dvclive.keras.DVCLiveCallback`` imports TensorFlow, which would tie training
    to one Keras backend; this callback only uses the Keras 3 API.
    """

    def __init__(self, live: Live):
        super().__init__()
        self.live = live

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for name, value in (logs or {}).items():
            split = "val" if name.startswith("val_") else "train"
            # A model with several heads reports the target head's accuracy as
            # classes_accuracy: logged as accuracy, as a one-head model's, for the same plots.
            name = name.removeprefix("val_").replace(f"{PRIMARY_HEAD}_accuracy", "accuracy")
            self.live.log_metric(f"{split}/{name}", float(value))
        self.live.next_step()


class FreshBatches(keras.utils.PyDataset):
    """Training batches made anew each epoch by ``make_inputs(positions, rng)``: a new order of
    the samples, and a new random stream for every batch; each batch is (inputs, labels,
    sample weights).

    The stream of batch ``i`` in epoch ``e`` is seeded by (seed, e, i), so the batches do not
    depend on which worker makes them or in what order Keras asks for them.

    Args:
        labels: class index of each sample, or a dict of them by head.
        sample_weights: loss weight of each sample.
        make_inputs: model inputs of the samples at ``positions`` (a numpy integer array),
            drawn with the numpy Generator ``rng``.
        batch_size: samples per batch; the last batch of an epoch may be smaller.
        seed: seeds the order and the batches.
        workers: threads Keras uses to make batches ahead of the model (PyDataset's
            ``workers``; 1 makes them in the training loop, where only TensorFlow prefetches).
    """

    def __init__(
        self,
        labels: Labels,
        sample_weights: np.ndarray,
        make_inputs: Callable[[np.ndarray, np.random.Generator], np.ndarray],
        batch_size: int,
        seed: int,
        workers: int = 1,
    ):
        super().__init__(workers=workers)
        self.labels = labels
        self.sample_weights = np.asarray(sample_weights, dtype=np.float32)
        self.make_inputs = make_inputs
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self._order_epoch = -1
        self._epoch_order = np.arange(len(self.labels))

    def __len__(self) -> int:
        return math.ceil(len(self.sample_weights) / self.batch_size)

    def _order(self) -> np.ndarray:
        """This epoch's order of the samples, drawn once per epoch."""
        if self._order_epoch != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch])
            self._epoch_order = rng.permutation(len(self.sample_weights))
            self._order_epoch = self.epoch
        return self._epoch_order

    def __getitem__(self, index: int) -> tuple[np.ndarray, Labels, np.ndarray]:
        positions = self._order()[index * self.batch_size : (index + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return (
            self.make_inputs(positions, rng),
            select_labels(self.labels, positions),
            self.sample_weights[positions],
        )

    def on_epoch_end(self) -> None:
        self.epoch += 1


@contextmanager
def mixed_precision(enabled: bool) -> Iterator[None]:
    """Build, compile and train models in the block with Keras' mixed_float16 policy when
    ``enabled`` (Keras then scales the loss itself); the previous policy comes back after."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16" if enabled else "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings: epochs, batch size, Adam learning rate, early-stopping patience,
    each head's loss weight by name (the target head first), and the epochs without a better
    validation loss before the learning rate is multiplied by LEARNING_RATE_FACTOR (None:
    the same learning rate throughout)."""

    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    loss_weights: dict[str, float] = field(default_factory=lambda: {PRIMARY_HEAD: 1.0})
    learning_rate_patience: int | None = None


@dataclass(frozen=True)
class FitResult:
    """What training did: wall time in seconds, epochs run, and the epoch whose weights
    were kept (1-based) with its validation loss."""

    seconds: float
    epochs_run: int
    best_epoch: int
    best_val_loss: float


def fit(
    model: keras.Model,
    train: tuple[np.ndarray, Labels, np.ndarray] | FreshBatches,
    val: tuple[np.ndarray, Labels],
    settings: TrainSettings,
    live: Live | None,
) -> FitResult:
    """Train ``model`` in place on (inputs, labels, sample weights), or on batches made fresh
    every epoch; keep the weights with the best validation loss (of all heads, weighted),
    lowering the learning rate on a plateau when the settings ask. Every epoch's metrics go
    to ``live`` when given."""
    heads = list(settings.loss_weights)
    several = len(heads) > 1
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=settings.learning_rate),
        loss={h: "sparse_categorical_crossentropy" for h in heads}
        if several
        else "sparse_categorical_crossentropy",
        loss_weights=settings.loss_weights if several else None,
        metrics={h: ["accuracy"] for h in heads} if several else ["accuracy"],
    )
    stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=settings.patience, restore_best_weights=True
    )
    callbacks: list[keras.callbacks.Callback] = [stopping]
    if settings.learning_rate_patience is not None:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=LEARNING_RATE_FACTOR,
                patience=settings.learning_rate_patience,
                verbose=1,
            )
        )
    if live is not None:
        callbacks.append(DVCLiveLogger(live))
    # Batches made on the fly come batched already; arrays are cut into batches by Keras.
    x, y, weights, batch_size = (
        (train, None, None, None)
        if isinstance(train, FreshBatches)
        else (*train, settings.batch_size)
    )
    start = time.perf_counter()
    history = model.fit(
        x,
        y,
        sample_weight=weights,
        validation_data=val,
        epochs=settings.epochs,
        batch_size=batch_size,
        callbacks=callbacks,
        verbose=2,
    )
    return FitResult(
        seconds=time.perf_counter() - start,
        epochs_run=len(history.history["loss"]),
        best_epoch=stopping.best_epoch + 1,
        best_val_loss=float(stopping.best),
    )
