"""xrdsym: crystal system from powder X-ray diffraction patterns.

The Python API, four functions for the patterns that come off a diffractometer:

- :func:`predict`: classify files, folders or arrays with a trained model (by default the one
  shipped with xrdsym); one :class:`~xrdsym.prediction.PredictionResult` per pattern.
- :func:`load_model`: a model directory, loaded once for many :func:`predict` calls.
- :func:`read_pattern`: a measured scan as 2θ (degrees), intensities and wavelength (Å).
- :func:`index`: the peaks, lattice system and unit cell of scans or structures (lattice
  indexing); one :class:`~xrdsym.index_scans.IndexedPattern` per pattern.

Importing xrdsym is light: numpy, pymatgen and the model are loaded by the first call that
needs them. Input a user can get wrong (a missing file, an unreadable scan, a folder that holds
no model) raises :class:`~xrdsym.errors.XrdsymError` with the one-line message that
``xrdsym predict`` prints.

Example (from the repository root; ``tests/data`` holds sample scans):

>>> import xrdsym
>>> [result] = xrdsym.predict("tests/data/nacl_cu.xy")
>>> result.crystal_system, round(result.confidence, 2)
('cubic', 0.84)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import os

    from xrdsym.index_scans import IndexedPattern
    from xrdsym.indexing import IndexSettings
    from xrdsym.measured import MeasuredPattern
    from xrdsym.prediction import Classifier, PredictionResult

try:
    __version__ = version("xrdsym")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["__version__", "index", "load_model", "predict", "read_pattern"]


def predict(
    paths_or_arrays: Any,
    model: Classifier | str | os.PathLike[str] | None = None,
    *,
    wavelength: str | float | None = None,
    top_k: int = 3,
    min_confidence: float = 0.0,
    background: str | None = None,
    smooth: float | None = None,
) -> list[PredictionResult]:
    """Classify powder patterns: the crystal system and its calibrated probability.

    Each input is read, converted to the model's wavelength (Bragg's law, constant d),
    put on its 2θ grid and through the model's own input transform, exactly as
    ``xrdsym predict`` does.

    Args:
        paths_or_arrays: one input or a list of them, each one of: a file path (``.xy
            .xye .dat .csv .txt .xrdml``, CIF powder data, or a CIF structure, simulated
            first); a folder (every such file under it, recursively); a pattern from
            :func:`read_pattern`; or a pair of arrays ``(two_theta_deg, intensities)`` (or
            a 2 x N array) of one scan.
        model: a model from :func:`load_model`, or a model directory written by the train
            stage; None: the model shipped with xrdsym (else ``models/`` here).
        wavelength: Å, or an anode name (``"CuKa"``, ``"MoKa"``, ...) for the inputs that
            do not state theirs; required for arrays.
        top_k: how many classes :attr:`~xrdsym.prediction.PredictionResult.top` lists.
        min_confidence: a result whose top calibrated probability is below this (0 <= P < 1)
            is flagged ``uncertain``.
        background: ``"snip"`` or ``"none"`` in place of the model's background removal of
            measured patterns (None: the model's).
        smooth: Gaussian smoothing of measured patterns, σ in grid points, in place of the
            model's (None: the model's).

    Returns:
        One result per pattern, in the order of the inputs (a folder's files sorted; a CIF
        may hold several patterns): ``crystal_system`` (None for a scan without peaks),
        ``confidence``, ``probabilities`` (every class, calibrated; for a model with a
        combiner, of the network and the indexing together), ``lattice_system`` and
        ``cell`` (the indexed cell, for a model that indexes), ``flags`` (``uncertain``,
        ``no_peaks``, ``unindexed``, ``partial_coverage``), ``warnings`` and ``to_dict()``.

    Raises:
        XrdsymError: for the first input that cannot be classified (missing or unreadable
            file, invalid data, no wavelength), a model directory without a model, or an
            invalid option; the message is the line ``xrdsym predict`` prints for it.

    Examples:
        A measured scan; it covers 89 % of the model's 2θ range, so it is flagged:

        >>> import xrdsym
        >>> [result] = xrdsym.predict("tests/data/nacl_cu.xy")
        >>> result.crystal_system
        'cubic'
        >>> result.flags
        ('partial_coverage',)
        >>> [(name, round(p, 2)) for name, p in result.top]
        [('cubic', 0.84), ('trigonal', 0.09), ('tetragonal', 0.06)]
        >>> result.lattice_system, round(result.cell["c"], 3)
        ('cubic', 5.64)
        >>> row = result.to_dict()  # plain types, for JSON
        >>> row["source"], row["crystal_system"], row["flags"]
        ('tests/data/nacl_cu.xy', 'cubic', ['partial_coverage'])

        Arrays of 2θ (degrees) and intensities, with their wavelength:

        >>> pattern = xrdsym.read_pattern("tests/data/nacl_mo.xye")
        >>> [result] = xrdsym.predict(
        ...     (pattern.two_theta, pattern.intensities), wavelength="MoKa"
        ... )
        >>> result.source, result.crystal_system
        ('array 0', 'cubic')

        Bad input raises XrdsymError with the command line's message:

        >>> xrdsym.predict("no/such/scan.xy")
        Traceback (most recent call last):
        ...
        xrdsym.errors.XrdsymError: no/such/scan.xy: cannot read (No such file or directory)
    """
    from xrdsym.prediction import predict_inputs

    return predict_inputs(
        paths_or_arrays,
        model,
        wavelength=wavelength,
        top_k=top_k,
        min_confidence=min_confidence,
        background=background,
        smooth=smooth,
    )


def load_model(path: str | os.PathLike[str] | None = None) -> Classifier:
    """Load a model directory written by the train stage, to pass to :func:`predict`.

    A 1D model with a numpy export runs on numpy alone (no Keras start-up); others in Keras.

    Args:
        path: the directory (with ``model.json``); None: the model shipped with xrdsym (else
            ``models/`` here).

    Returns:
        The model: ``classes``, ``wavelength`` (Å), ``grid`` (its 2θ grid, degrees),
        ``engine`` (``"numpy"`` or ``"keras"``), ``meta`` (its ``model.json``).

    Raises:
        XrdsymError: the directory holds no model, or one of another format.

    Examples:
        >>> import xrdsym
        >>> model = xrdsym.load_model()
        >>> model.classes
        ['cubic', 'hexagonal', 'monoclinic', 'orthorhombic', 'tetragonal', 'triclinic', 'trigonal']
        >>> round(model.wavelength, 4), model.engine
        (1.5418, 'numpy')
        >>> [result] = xrdsym.predict("tests/data/nacl.cif", model)
        >>> result.kind, result.crystal_system
        ('structure', 'cubic')
        >>> xrdsym.load_model("tests/data")
        Traceback (most recent call last):
        ...
        xrdsym.errors.XrdsymError: tests/data: not a model directory (no model.json)
    """
    from xrdsym.prediction import load_classifier, model_directory

    return load_classifier(model_directory(path)[0])


def read_pattern(path: str | os.PathLike[str]) -> MeasuredPattern:
    """Read one measured powder pattern from a file.

    Formats: two-column text (``.xy .xye .dat .csv .txt``; comments, headers and decimal
    commas handled, the wavelength read from a header line), PANalytical ``.xrdml`` (the
    first scan) and CIF powder data (one data block).

    Args:
        path: the file.

    Returns:
        The pattern: ``two_theta`` (degrees, strictly increasing), ``intensities``,
        ``wavelength`` (Å, None when the file does not state it) and ``source``.

    Raises:
        XrdsymError: the file is missing, unreadable, not a pattern, or a CIF with several
            measured patterns (read those with :func:`xrdsym.measured.read_measured`).

    Examples:
        >>> import xrdsym
        >>> pattern = xrdsym.read_pattern("tests/data/nacl_cu.xrdml")
        >>> round(pattern.wavelength, 4), len(pattern.two_theta) == len(pattern.intensities)
        (1.5419, True)
    """
    from xrdsym.errors import XrdsymError
    from xrdsym.measured import read_measured

    patterns = read_measured(path)
    if len(patterns) != 1:
        raise XrdsymError(
            f"{path}: holds {len(patterns)} patterns ({', '.join(p.source for p in patterns)}); "
            "read them all with xrdsym.measured.read_measured"
        )
    return patterns[0]


def index(
    paths_or_arrays: Any,
    *,
    wavelength: str | float | None = None,
    settings: IndexSettings | None = None,
) -> list[IndexedPattern]:
    """Index powder patterns: their peaks, lattice system and unit cell, as ``xrdsym index``.

    Peaks are fitted (pseudo-Voigt, the Kα1/Kα2 doublet recognised from the wavelength) and
    their first 20 lines indexed by a search over every lattice system, refined by least
    squares with the zero shift and ranked by de Wolff's M(N) (see :mod:`xrdsym.indexing`).

    Args:
        paths_or_arrays: one input or a list, as for :func:`predict`: files (scans, or CIF
            structures, whose calculated lines are indexed), folders, patterns from
            :func:`read_pattern`, or ``(two_theta_deg, intensities)`` arrays.
        wavelength: Å or an anode name, for the inputs that do not state theirs (required
            for arrays) and for CIF structures (default Cu Kα1).
        settings: :class:`~xrdsym.indexing.IndexSettings` (tolerances, time budget); None:
            the defaults, those of ``params.yaml``.

    Returns:
        One :class:`~xrdsym.index_scans.IndexedPattern` per pattern: ``source``, ``peaks``
        (2θ, d, intensity, width and position uncertainty per reflection), ``result`` (the
        chosen ``best`` cell or None with a ``reason``, and the best cell of each lattice
        system in ``candidates``) and ``to_record()`` (the JSON record).

    Raises:
        XrdsymError: the first input that cannot be read, or an array without a wavelength.

    Examples:
        >>> import xrdsym
        >>> [scan] = xrdsym.index("tests/data/nacl_cu.xy")
        >>> best = scan.result.best
        >>> best.lattice_system, best.centring, round(best.cell["a"], 3)
        ('cubic', 'F', 5.64)
        >>> best.lines_indexed, best.lines_used
        (8, 8)
        >>> scan.to_record()["figures_of_merit"]["lines_indexed"]
        8

        A scan in which no peak stands out is not indexed, with the reason:

        >>> import numpy as np
        >>> two_theta = np.arange(10, 80, 0.02)
        >>> noise = np.random.default_rng(0).poisson(100, two_theta.size)
        >>> [scan] = xrdsym.index((two_theta, noise), wavelength="CuKa")
        >>> scan.result.lattice_system, scan.result.reason
        (None, '0 significant peaks, fewer than the 5 needed to index')
    """
    from xrdsym.index_scans import index_inputs

    return index_inputs(paths_or_arrays, wavelength=wavelength, index_settings=settings)
