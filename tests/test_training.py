import keras
import numpy as np
from dvclive import Live

from xrdsym.models import build_mobilenetv2
from xrdsym.stages.train import class_weights
from xrdsym.training import TrainSettings, fit


def test_fit_lowers_the_loss_and_logs_every_epoch(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    # Two classes a network can tell apart: a bright band at the top or at the bottom.
    images = rng.integers(0, 40, size=(32, 32, 32, 3)).astype(np.uint8)
    labels = np.arange(32) % 2
    images[labels == 0, :8] = 255
    images[labels == 1, -8:] = 255
    model = build_mobilenetv2(32, 2, weights=None, alpha=0.35, dropout=0.0, batchnorm_momentum=0.9)
    settings = TrainSettings(epochs=4, batch_size=8, learning_rate=1e-3, patience=4)
    with Live(dir=str(tmp_path / "live"), dvcyaml=None, save_dvc_exp=False) as live:
        result = fit(model, (images, labels), (images[:8], labels[:8]), settings, live)
    losses = np.loadtxt(tmp_path / "live/plots/metrics/train/loss.tsv", skiprows=1, usecols=1)
    assert len(losses) == result.epochs_run == 4
    assert losses[-1] < losses[0]
    assert 1 <= result.best_epoch <= 4 and result.seconds > 0
    assert (tmp_path / "live/plots/metrics/val/accuracy.tsv").exists()


def test_balanced_class_weights_equalise_the_classes():
    labels = np.array([0] * 6 + [1] * 2)
    weights = class_weights(labels, 3, "balanced")
    # Each present class's weights sum to the same total; an absent class weighs 1.
    assert weights[0] * 6 == weights[1] * 2 == len(labels) / 2
    assert weights[2] == 1.0
    assert class_weights(labels, 3, "none") is None
