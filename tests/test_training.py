import functools

import keras
import numpy as np
from dvclive import Live

from xrdsym.augmentation import AugmentSettings, peak_reflections
from xrdsym.diffraction import Peaks, PeakTable, TwoThetaGrid
from xrdsym.inputs import augmented_pattern_inputs, inputs_made_once
from xrdsym.models import build_cnn1d, build_mobilenetv2, build_resnet1d
from xrdsym.preprocessing import InputSettings
from xrdsym.stages.train import VALIDATION_STREAM, class_weights
from xrdsym.training import FreshBatches, TrainSettings, fit, sample_weights, select_labels

GRID = TwoThetaGrid(10, 50, 0.05)
# Every part of the augmentation on, at its default ranges.
AUGMENT = AugmentSettings(
    instrument_fwhm_deg=(0.1, 0.2),
    profile="pseudo_voigt",
    crystallite_nm=(20, 100),
    strain=(-0.005, 0.005),
    zero_offset_deg=(-0.05, 0.05),
    march_dollase_r=(0.7, 1.0),
    background=(0.0, 0.1),
    noise_counts=(300, 10000),
)
PREPROCESS = InputSettings("snip", 3.0, 0.0)


def _two_class_peaks(n: int) -> tuple[PeakTable, np.ndarray]:
    """``n`` peak lists of two classes a network can tell apart: peaks at 20 and 30 degrees,
    or at 25 and 40 degrees, with a few weaker peaks anywhere."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    lists = []
    for label in labels:
        strong = [20.0, 30.0] if label == 0 else [25.0, 40.0]
        two_theta = np.concatenate([strong, rng.uniform(12, 48, 3)])
        intensities = np.concatenate([[100.0, 80.0], rng.uniform(5, 30, 3)])
        lists.append(Peaks(two_theta, intensities, rng.integers(-2, 3, (5, 3)) | 1))
    lattice = np.eye(3) / 5.0
    return PeakTable.from_peaks(lists, [lattice] * n), labels


def _make_inputs(table: PeakTable):
    return functools.partial(
        augmented_pattern_inputs,
        table=table,
        grid=GRID,
        wavelength_angstrom=1.54184,
        settings=AUGMENT,
        reflections=peak_reflections(table, 1.54184),
        preprocess=PREPROCESS,
    )


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
        result = fit(model, (images, labels, np.ones(32)), (images[:8], labels[:8]), settings, live)
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


def test_fresh_batches_cover_every_sample_once_per_epoch_with_new_draws():
    table, labels = _two_class_peaks(10)
    weights = np.arange(10.0)
    batches = FreshBatches(labels, weights, _make_inputs(table), batch_size=4, seed=3)
    assert len(batches) == 3
    x, y, w = batches[0]
    assert x.shape == (4, GRID.size, 1) and x.dtype == np.float32 and y.shape == (4,)
    # Each sample keeps its own weight: the weights follow the labels' order.
    assert np.array_equal(labels[w.astype(int)], y)
    assert x.min() >= 0 and x.max() <= 1
    # The same epoch and batch give the same batch, whichever worker makes it and when.
    assert np.array_equal(batches[0][0], x)
    epoch_labels = np.concatenate([batches[i][1] for i in range(3)])
    assert sorted(epoch_labels) == sorted(labels)
    batches.on_epoch_end()
    assert not np.array_equal(batches[0][0], x)
    assert sorted(np.concatenate([batches[i][1] for i in range(3)])) == sorted(labels)


def test_cnn1d_learns_from_patterns_augmented_on_the_fly(tmp_path):
    keras.utils.set_random_seed(0)
    table, labels = _two_class_peaks(32)
    train = FreshBatches(
        labels, np.ones(len(labels)), _make_inputs(table), batch_size=8, seed=0, workers=2
    )
    # Validation is augmented once, with a fixed seed, as in the pipeline.
    val_x = inputs_made_once(_make_inputs(table), 8, (0, VALIDATION_STREAM))
    model = build_cnn1d(GRID.size, {"classes": 2}, dropout=0.0)
    settings = TrainSettings(epochs=4, batch_size=8, learning_rate=1e-3, patience=4)
    with Live(dir=str(tmp_path / "live"), dvcyaml=None, save_dvc_exp=False) as live:
        result = fit(model, train, (val_x, labels[:8]), settings, live)
    losses = np.loadtxt(tmp_path / "live/plots/metrics/train/loss.tsv", skiprows=1, usecols=1)
    # Every epoch drew afresh (Keras may also reset once before the first epoch).
    assert len(losses) == result.epochs_run == 4 and train.epoch >= 4
    assert losses[-1] < losses[0]


def test_multi_task_resnet1d_learns_both_heads_with_sample_weights(tmp_path):
    """The residual network with a crystal-system and a space-group head trains on batches
    made afresh, each head's loss falling; weights per sample stand in for class weights."""
    keras.utils.set_random_seed(0)
    table, labels = _two_class_peaks(32)
    # Two "space groups" per class, told apart by nothing but the class: the head learns
    # the class part of them.
    groups = labels * 2 + (np.arange(32) // 2) % 2
    both = {"classes": labels, "space_group": groups}
    weights = sample_weights(labels, {0: 1.0, 1: 3.0})
    assert np.array_equal(weights, np.where(labels == 1, 3.0, 1.0))
    train = FreshBatches(both, weights, _make_inputs(table), batch_size=8, seed=0)
    val_x = inputs_made_once(_make_inputs(table), 8, (0, VALIDATION_STREAM))
    model = build_resnet1d(
        GRID.size, {"classes": 2, "space_group": 4}, dropout=0.0, blocks_per_stage=1
    )
    settings = TrainSettings(
        epochs=4,
        batch_size=8,
        learning_rate=1e-3,
        patience=4,
        loss_weights={"classes": 1.0, "space_group": 0.5},
    )
    with Live(dir=str(tmp_path / "live"), dvcyaml=None, save_dvc_exp=False) as live:
        result = fit(model, train, (val_x, select_labels(both, np.arange(8))), settings, live)
    plots = tmp_path / "live/plots/metrics/train"
    for name in ("loss", "classes_loss", "space_group_loss"):
        losses = np.loadtxt(plots / f"{name}.tsv", skiprows=1, usecols=1)
        assert len(losses) == result.epochs_run == 4 and losses[-1] < losses[0], name
    # The target head's accuracy is logged as accuracy, for the same plots as one head.
    assert (plots / "accuracy.tsv").exists() and (plots / "space_group_accuracy.tsv").exists()


def _plateau_fit(tmp_path, learning_rate_patience):
    """A softmax regression fitted for 3 epochs at a learning rate too small to change its
    validation loss: every epoch after the first is a plateau."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, labels = rng.random((16, 20)).astype(np.float32), np.arange(16) % 2
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(2, activation="softmax")])
    settings = TrainSettings(
        epochs=3,
        batch_size=8,
        learning_rate=1e-9,
        patience=4,
        learning_rate_patience=learning_rate_patience,
    )
    with Live(dir=str(tmp_path / "live"), dvcyaml=None, save_dvc_exp=False) as live:
        fit(model, (x, labels, np.ones(16)), (x[:8], labels[:8]), settings, live)
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def test_the_learning_rate_halves_on_a_plateau_when_asked(tmp_path):
    # Epochs 2 and 3 bring no better validation loss: halved after each, with patience 1.
    assert np.isclose(_plateau_fit(tmp_path / "plateau", 1), 1e-9 / 4, rtol=1e-5)
    assert np.isclose(_plateau_fit(tmp_path / "constant", None), 1e-9, rtol=1e-5)
