"""Training loop: Keras ``fit`` on in-memory arrays, logged to DVCLive, backend-agnostic."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import keras
import numpy as np

if TYPE_CHECKING:
    from dvclive import Live


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
            if name.startswith("val_"):
                self.live.log_metric(f"val/{name.removeprefix('val_')}", float(value))
            else:
                self.live.log_metric(f"train/{name}", float(value))
        self.live.next_step()


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings: epochs, batch size, Adam learning rate, early-stopping patience,
    and per-class loss weights (None: every class weighs 1)."""

    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    class_weight: dict[int, float] | None = None


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
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    settings: TrainSettings,
    live: Live,
) -> FitResult:
    """Train ``model`` in place on (inputs, class indices); keep the weights with the best
    validation loss."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=settings.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=settings.patience, restore_best_weights=True
    )
    start = time.perf_counter()
    history = model.fit(
        train[0],
        train[1],
        validation_data=val,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        class_weight=settings.class_weight,
        callbacks=[DVCLiveLogger(live), stopping],
        verbose=2,
    )
    return FitResult(
        seconds=time.perf_counter() - start,
        epochs_run=len(history.history["loss"]),
        best_epoch=stopping.best_epoch + 1,
        best_val_loss=float(stopping.best),
    )
