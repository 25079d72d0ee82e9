"""Readers for measured powder XRD patterns: two-column text, PANalytical XRDML, powder CIF.

Every reader ends in :func:`validate`, so a :class:`MeasuredPattern` always holds strictly
increasing 2θ in (0, 180) degrees and finite, non-negative intensities that are not all zero.
Anything wrong with a file is reported as one :class:`~xrdsym.errors.XrdsymError` line that
starts with the file's path and says the reason.

Parsers: the standard library's ``xml.etree.ElementTree`` reads XRDML; pymatgen's ``CifBlock``
(the grammar behind ``CifFile.from_str``) reads each CIF data block; the text format is read here.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xrdsym.errors import XrdsymError
from xrdsym.wavelengths import WAVELENGTHS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import ArrayLike

MIN_POINTS = 20
"""Fewer points than this cannot be a powder pattern worth classifying ("too few points")."""

TEXT_SUFFIXES = (".xy", ".xye", ".dat", ".csv", ".txt")
XRDML_SUFFIXES = (".xrdml",)
CIF_SUFFIXES = (".cif",)
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + XRDML_SUFFIXES + CIF_SUFFIXES

TWO_THETA_LIMITS = (0.0, 180.0)
"""Open interval of physically possible scattering angles, degrees."""

# Two-column text: what starts a comment line, what separates values, what a number looks like.
COMMENT_PREFIXES = ("#", "!", ";", "'")
_SEPARATORS = re.compile(r"[\s,;]+")
_INLINE_SEPARATORS = re.compile(r"[ \t\f\v,;]+")
_COMMENT_LINE_RE = re.compile(r"^[ \t\f\v]*[#!;']", re.MULTILINE)
# Decimal commas: two or more numbers like 10,02 or 1234 separated by semicolons or blanks,
# at least one with a comma; then commas are decimal marks, not separators.
_DECIMAL_COMMA_SEPARATORS = re.compile(r"[\s;]+")
_DECIMAL_COMMA_LINE = re.compile(
    r"(?=.*\d,\d)[-+]?\d+(?:,\d+)?(?:[eE][-+]?\d+)?(?:[\s;]+[-+]?\d+(?:,\d+)?(?:[eE][-+]?\d+)?)+"
)
_NUMBER = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf(?:inity)?)"
_NUMBER_RE = re.compile(_NUMBER, re.IGNORECASE | re.ASCII)
# A CIF number may carry its standard uncertainty in parentheses: 1234(35), 5.6402(2).
_CIF_NUMBER_RE = re.compile(rf"({_NUMBER})(?:\(\d+\))?", re.IGNORECASE | re.ASCII)
_CIF_MISSING = ("?", ".")

# Wavelength stated in a text header: "# wavelength: 1.5406", "Wavelength (Å) = 0.7093 A",
# "lambda=1.54056"; or an anode: "# Anode: Cu", "# radiation CuKa", "Target: Mo K-alpha1".
_STATED_WAVELENGTH_RE = re.compile(
    # An index glued to the keyword ("Wavelength1 = 1.5406") is not the value.
    r"(?<![a-z])(?:wave\s*length|lambda|λ)s?\d?(?![a-z0-9.])"
    r"\s*(?:\([^)]*\)|\[[^\]]*\])?\s*[:=]?\s*"
    r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)",
    re.IGNORECASE | re.ASCII,
)
_ANODES = sorted({name[: name.index("K")] for name in WAVELENGTHS})
_STATED_ANODE_RE = re.compile(
    r"(?<![a-z])(?:anode|radiation|target|tube|source|wave\s*length|lambda)"
    r"(?:\s+(?:material|type))?\s*[:=]?\s*"
    rf"({'|'.join(_ANODES)})(?:\s*[-_]?\s*(K\s*[-_]?\s*(?:alpha|α|a|beta|β|b)\s*[12]?))?(?![a-z])",
    re.IGNORECASE,
)
_WAVELENGTH_NAMES = {name.lower(): name for name in WAVELENGTHS}

# XRDML wavelength units (the schema writes "Angstrom"), as factors to Å.
_XRDML_LENGTH_UNITS = {"angstrom": 1.0, "å": 1.0, "nm": 10.0, "pm": 0.01}

# CIF tags, in order of preference.
CIF_TWO_THETA_TAGS = ("_pd_meas_2theta_scan", "_pd_proc_2theta_corrected", "_pd_meas_angle_2theta")
CIF_TWO_THETA_RANGES = ("_pd_meas_2theta_range", "_pd_proc_2theta_range")
CIF_INTENSITY_TAGS = (
    "_pd_meas_counts_total",
    "_pd_meas_intensity_total",
    "_pd_proc_intensity_total",
    "_pd_proc_intensity_net",
)
# Net intensities have the background subtracted already: counting noise takes the points
# between peaks a little below zero, which are clipped to 0 (no other intensity may be < 0).
CIF_NET_INTENSITY_TAG = "_pd_proc_intensity_net"
# Calculated, not measured: PLATON appends a block ``<name>_simulated_[<wavelength>]`` to the
# CIFs of IUCr journals (publCIF marks it ``_publcif_pd_cifplot 'simulated <date>'``), and
# Rietveld programs write ``_pd_calc_intensity_*`` beside the measured profile.
CIF_SIMULATED_BLOCK = "_simulated_"
CIF_PLOT_TAG = "_publcif_pd_cifplot"
CIF_CALCULATED_TAGS = ("_pd_calc_intensity_total", "_pd_calc_intensity_net")
CIF_WAVELENGTH_TAGS = ("_diffrn_radiation_wavelength", "_pd_proc_wavelength")
# A range holds (max - min) / inc + 1 points; this relative slack absorbs rounding in the file.
CIF_RANGE_POINTS_TOL = 1e-3


@dataclass(frozen=True, eq=False)
class MeasuredPattern:
    """One measured powder pattern, checked by :func:`validate`.

    Attributes:
        two_theta: scattering angles in degrees (float64, strictly increasing, in (0, 180)).
        intensities: counts or intensities as the file gives them (float64, finite, >= 0,
            not all zero), one per angle; read-only.
        wavelength: in Å when the file states it, else None.
        source: the file's path, plus ``#<block name>`` for a CIF data block.
    """

    two_theta: np.ndarray
    intensities: np.ndarray
    wavelength: float | None
    source: str

    def wavelength_or(self, given: float | None, option: str = "--wavelength") -> float:
        """The wavelength (Å) the file states, else ``given``; with neither, XrdsymError
        naming the pattern and ``option``, the way to give one."""
        if self.wavelength is not None:
            return self.wavelength
        if given is None:
            raise XrdsymError(
                f"{self.source}: the file does not state its wavelength; give {option} (Å, or "
                "an anode such as CuKa, MoKa, CoKa)"
            )
        return given


class NoPowderData(XrdsymError):
    """A CIF that parses but holds no powder data (only structures, say)."""


class NotAPattern(XrdsymError):
    """A file that holds no pattern at all: binary, or text without a single line of two
    numbers (notes, a table of labels)."""


class CalculatedBlockSkipped(UserWarning):
    """A CIF data block of calculated powder data (PLATON's simulated pattern, a Rietveld
    program's calculated profile) that was left out: only measured patterns are read."""


def parse_wavelength(text: str | float) -> float:
    """Wavelength in Å from a number ("1.5406", "1.5406 Å") or an anode name.

    Names are pymatgen's ``WAVELENGTHS`` keys (CuKa, CuKa1, MoKa, CoKa, FeKa, AgKa, CrKa, ...),
    case-insensitive, also written "Cu K-alpha1" or "Cu Kα"; a bare anode ("Cu") means its Kα.
    Raises XrdsymError for anything else, listing the known names.
    """
    if isinstance(text, Real) and not isinstance(text, bool):
        return _positive_wavelength(float(text), repr(float(text)))
    if not isinstance(text, str):
        raise XrdsymError(f"wavelength must be a number in Å or an anode name, not {text!r}")
    number = re.fullmatch(rf"\s*({_NUMBER})\s*(?:Å|A|angstroms?)?\s*", text, re.I | re.ASCII)
    if number:
        return _positive_wavelength(float(number.group(1)), repr(text))
    key = re.sub(r"[\s_-]", "", text).lower()
    key = key.replace("alpha", "a").replace("α", "a").replace("beta", "b").replace("β", "b")
    if key.capitalize() in _ANODES:
        key += "ka"
    if key in _WAVELENGTH_NAMES:
        return WAVELENGTHS[_WAVELENGTH_NAMES[key]]
    raise XrdsymError(
        f"unknown wavelength {text!r}: give it in Å or as one of {', '.join(WAVELENGTHS)}"
    )


def _positive_wavelength(value: float, shown: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise XrdsymError(f"wavelength {shown} is not a positive, finite number of Å")
    return value


def read_measured(path: str | Path) -> list[MeasuredPattern]:
    """Read the measured pattern(s) in ``path``, chosen by its suffix (case-insensitive).

    - ``.xy .xye .dat .csv .txt``: two-column text (2θ, intensity), see ``_parse_text``;
    - ``.xrdml``: PANalytical XML, one pattern (the first scan), see ``_parse_xrdml``;
    - ``.cif``: CIF powder data, one pattern per data block that holds some, see ``_parse_cif``.

    Raises XrdsymError (one line, starting with the path) for an unsupported suffix, an
    unreadable file or invalid data; NotAPattern (a subclass) for a file that holds no
    pattern at all; NoPowderData for a CIF without powder data. Warns CalculatedBlockSkipped
    for every CIF block of calculated data it leaves out.
    """
    source = os.fspath(path)
    suffix = Path(source).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise XrdsymError(
            f"{source}: unsupported file type {repr(suffix) if suffix else '(no suffix)'}; "
            f"measured patterns are read from {' '.join(SUPPORTED_SUFFIXES)}"
        )
    data = _read_bytes(source)
    if suffix in XRDML_SUFFIXES:
        return [_parse_xrdml(data, source)]
    if suffix in CIF_SUFFIXES:
        return _parse_cif(_decode_text(data, source), source)
    return [_parse_text(_decode_text(data, source), source)]


def validate(
    two_theta: ArrayLike,
    intensities: ArrayLike,
    wavelength: float | None,
    source: str,
    *,
    lines: Sequence[int] | None = None,
) -> MeasuredPattern:
    """Check a pattern and return it as a MeasuredPattern (float64, read-only copies).

    Checks, in this order: at least MIN_POINTS points; equal lengths; finite 2θ and
    intensities; no negative intensity; 2θ strictly increasing; 2θ inside (0, 180) degrees;
    not all intensities zero; a positive, finite wavelength (when given).

    Args:
        two_theta: angles in degrees.
        intensities: one intensity per angle.
        wavelength: Å, or None when unknown.
        source: where the data came from; every error message starts with it.
        lines: the file line of each point, for messages (else points are counted from 1).
    """

    def fail(reason: str) -> XrdsymError:
        return XrdsymError(f"{source}: {reason}")

    def at(index: int) -> str:
        if lines is not None and index < len(lines):
            return f"line {lines[index]}"
        return f"point {index + 1}"

    try:
        angles = np.array(two_theta, dtype=np.float64)
        values = np.array(intensities, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise fail(f"2θ and intensities must be numbers ({_one_line(exc)})") from exc
    if angles.ndim != 1 or values.ndim != 1:
        raise fail(f"2θ and intensities must be 1-D, not {angles.shape} and {values.shape}")
    if max(angles.size, values.size) < MIN_POINTS:
        raise fail(f"too few points ({max(angles.size, values.size)} < {MIN_POINTS})")
    if angles.size != values.size:
        raise fail(f"lengths differ ({angles.size} 2θ values, {values.size} intensities)")
    for name, array in (("2θ", angles), ("intensity", values)):
        bad = np.flatnonzero(~np.isfinite(array))
        if bad.size:
            raise fail(
                f"{bad.size} non-finite {name} value(s), the first ({array[bad[0]]}) "
                f"at {at(bad[0])}"
            )
    negative = np.flatnonzero(values < 0)
    if negative.size:
        first = negative[0]
        raise fail(
            f"{negative.size} negative intensities, the first at 2θ = {angles[first]:g}° "
            f"({at(first)})"
        )
    backwards = np.flatnonzero(np.diff(angles) <= 0)
    if backwards.size:
        i = backwards[0] + 1
        now, before = angles[i], angles[i - 1]
        raise fail(f"2θ is not strictly increasing ({at(i)}: {now:.10g}° after {before:.10g}°)")
    low, high = TWO_THETA_LIMITS
    if angles[0] <= low or angles[-1] >= high:
        raise fail(
            f"2θ outside ({low:g}, {high:g}) degrees: from {angles[0]:g}° to {angles[-1]:g}°"
        )
    if not np.any(values > 0):
        raise fail("all intensities are zero")
    if wavelength is not None:
        try:
            wavelength = float(wavelength)
        except (TypeError, ValueError) as exc:
            raise fail(f"wavelength {wavelength!r} is not a number") from exc
        if not (math.isfinite(wavelength) and wavelength > 0):
            raise fail(f"wavelength {wavelength!r} Å is not positive and finite")
    angles.setflags(write=False)
    values.setflags(write=False)
    return MeasuredPattern(angles, values, wavelength, source)


# ---------------------------------------------------------------------------------------------
# Files and two-column text


def _one_line(exc: BaseException | str) -> str:
    """An exception's message squeezed onto one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _preview(text: str, limit: int = 40) -> str:
    """A piece of the file, quoted and cut short, safe to put in a one-line message."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _read_bytes(source: str) -> bytes:
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise XrdsymError(f"{source}: cannot read ({_one_line(exc.strerror or exc)})") from exc


def _decode_text(data: bytes, source: str) -> str:
    """UTF-8 (with or without BOM), else Latin-1 as older instrument software writes it."""
    if b"\x00" in data:
        raise NotAPattern(f"{source}: not a text file (it holds NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _parse_text(text: str, source: str) -> MeasuredPattern:
    """Two-column text: 2θ (degrees) and intensity per line, any further columns ignored.

    Blank lines and lines starting with ``# ! ; '`` are skipped anywhere; lines before the first
    line with two numbers are a header and skipped. Values are separated by any mix of commas,
    semicolons, spaces and tabs, except in files written with decimal commas ("10,02;1234,5" or
    "10,02<tab>1234,5", recognised on the first data line), where only semicolons, spaces and
    tabs separate. A wavelength stated in a comment or header line ("wavelength: 1.5406",
    "lambda=1.54056", "Anode: Cu", "radiation CuKa") is kept.
    """
    lines = re.split(r"\r\n|\r|\n", text)
    notes: list[str] = []  # comment and header lines, searched for a wavelength
    start = None
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith(COMMENT_PREFIXES):
            fields = [field.strip('"') for field in _SEPARATORS.split(stripped) if field]
            if [bool(_NUMBER_RE.fullmatch(field)) for field in fields[:2]] == [True, True]:
                start = index
                break
        notes.append(stripped)
    if start is None:
        raise NotAPattern(f"{source}: no data points (no line with 2θ and intensity numbers)")
    decimal_comma = bool(_DECIMAL_COMMA_LINE.fullmatch(lines[start].strip()))
    body = lines[start:]
    table = _read_table(body, decimal_comma)
    if table is not None:
        try:
            return validate(table[:, 0], table[:, 1], _stated_wavelength(notes, source), source)
        except XrdsymError:
            pass  # read again line by line below, to name the offending line
    two_theta, intensities, line_numbers = _read_lines(
        body, start + 1, decimal_comma, notes, source
    )
    wavelength = _stated_wavelength(notes, source)
    return validate(two_theta, intensities, wavelength, source, lines=line_numbers)


def _read_table(body: Sequence[str], decimal_comma: bool) -> np.ndarray | None:
    """The data lines as a table (rows x columns) read in one go by numpy, or None when they
    hold anything unusual (comment lines, quotes, ragged rows, words), which
    :func:`_read_lines` then reads and reports line by line."""
    text = "\n".join(body)
    if not text.strip() or '"' in text or _COMMENT_LINE_RE.search(text):
        return None
    if decimal_comma:
        text = text.replace(",", ".")
    if "," in text or ";" in text:
        text = _INLINE_SEPARATORS.sub(" ", text)
    try:
        table = np.loadtxt(io.StringIO(text), dtype=np.float64, comments=None, ndmin=2)
    except ValueError:
        return None
    return table if table.shape[1] >= 2 else None


def _read_lines(
    body: Sequence[str], first_line: int, decimal_comma: bool, notes: list[str], source: str
) -> tuple[list[float], list[float], list[int]]:
    """2θ, intensities and the line number of each point, from the data lines starting at
    line ``first_line``; comment lines among them are added to ``notes``."""
    separators = _DECIMAL_COMMA_SEPARATORS if decimal_comma else _SEPARATORS
    two_theta: list[float] = []
    intensities: list[float] = []
    line_numbers: list[int] = []
    for number, line in enumerate(body, start=first_line):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(COMMENT_PREFIXES):
            notes.append(stripped)
            continue
        fields = [field.strip('"') for field in separators.split(stripped) if field]
        if not fields:
            continue  # separators alone, as numpy's reader sees it: a blank line
        if decimal_comma:
            fields = [field.replace(",", ".") for field in fields]
        if len(fields) < 2:
            raise XrdsymError(
                f"{source}: line {number} has fewer than 2 numbers ({_preview(stripped)})"
            )
        numeric = [bool(_NUMBER_RE.fullmatch(field)) for field in fields[:2]]
        if not all(numeric):
            bad = fields[numeric.index(False)]
            raise XrdsymError(f"{source}: line {number}: {_preview(bad)} is not a number")
        two_theta.append(float(fields[0]))
        intensities.append(float(fields[1]))
        line_numbers.append(number)
    return two_theta, intensities, line_numbers


def _stated_wavelength(notes: Sequence[str], source: str) -> float | None:
    """The first wavelength a number states in ``notes``, else the first anode named, else None."""
    for note in notes:
        if match := _STATED_WAVELENGTH_RE.search(note):
            return float(match.group(1))
    for note in notes:
        if match := _STATED_ANODE_RE.search(note):
            name = match.group(1) + re.sub(r"[\s_-]", "", match.group(2) or "")
            if re.search(r"(beta|β|b)$", name, re.IGNORECASE):
                name += "1"  # pymatgen knows Kβ1 only
            try:
                return parse_wavelength(name)
            except XrdsymError as exc:
                raise XrdsymError(f"{source}: {exc}") from exc
    return None


# ---------------------------------------------------------------------------------------------
# XRDML


def _local(tag: object) -> str:
    """An XML tag without its namespace ("{http://www.xrdml.com/...}scan" -> "scan")."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _child(element: ET.Element, name: str) -> ET.Element | None:
    return next(iter(_children(element, name)), None)


def _xml_floats(element: ET.Element, source: str) -> np.ndarray:
    fields = (element.text or "").split()
    for field in fields:
        if not _NUMBER_RE.fullmatch(field):
            raise XrdsymError(
                f"{source}: <{_local(element.tag)}> holds {_preview(field)}, not a number"
            )
    return np.array([float(field) for field in fields], dtype=np.float64)


def _xml_float(element: ET.Element, source: str) -> float:
    values = _xml_floats(element, source)
    if values.size != 1:
        raise XrdsymError(f"{source}: <{_local(element.tag)}> must hold one number")
    return float(values[0])


def _parse_xrdml(data: bytes, source: str) -> MeasuredPattern:
    """PANalytical XRDML (any schema version): the first scan of the first measurement.

    Tags are matched by local name, whatever the namespace. 2θ comes from
    ``dataPoints/positions[@axis="2Theta"]`` (``listPositions``, or ``startPosition`` and
    ``endPosition`` spread evenly over the points); intensities from ``intensities`` (or
    ``counts``), kept as the file gives them (no division by the counting time).
    """
    try:
        root = ET.fromstring(data)
    except (ET.ParseError, ValueError, LookupError) as exc:
        raise XrdsymError(f"{source}: not valid XML ({_one_line(exc)})") from exc
    if _local(root.tag) != "xrdMeasurements":
        raise XrdsymError(
            f"{source}: not an XRDML file (root element <{_local(root.tag)}>, "
            "expected <xrdMeasurements>)"
        )
    # Several measurements or scans: only the first scan of the first measurement is read.
    found = [(m, s) for m in _children(root, "xrdMeasurement") for s in _children(m, "scan")]
    if not found:
        raise XrdsymError(f"{source}: holds no <xrdMeasurement>/<scan>")
    measurement, scan = found[0]
    points = _child(scan, "dataPoints")
    if points is None:
        raise XrdsymError(f"{source}: the first <scan> has no <dataPoints>")
    counts = _child(points, "intensities")
    if counts is None:
        counts = _child(points, "counts")
    if counts is None:
        raise XrdsymError(f"{source}: <dataPoints> has no <intensities> or <counts>")
    intensities = _xml_floats(counts, source)
    two_theta = _xrdml_two_theta(points, intensities.size, source)
    wavelength = _xrdml_wavelength(measurement, source)
    return validate(two_theta, intensities, wavelength, source)


def _xrdml_two_theta(points: ET.Element, size: int, source: str) -> np.ndarray:
    axes = [p for p in _children(points, "positions") if p.get("axis") == "2Theta"]
    if not axes:
        raise XrdsymError(f'{source}: <dataPoints> has no <positions axis="2Theta">')
    listed = _child(axes[0], "listPositions")
    if listed is not None:
        return _xml_floats(listed, source)
    start, end = _child(axes[0], "startPosition"), _child(axes[0], "endPosition")
    if start is None or end is None:
        raise XrdsymError(
            f"{source}: the 2Theta <positions> have neither <listPositions> nor "
            "<startPosition> and <endPosition>"
        )
    with np.errstate(all="ignore"):  # inf or nan ends are reported by validate
        return np.linspace(_xml_float(start, source), _xml_float(end, source), size)


def _xrdml_wavelength(measurement: ET.Element, source: str) -> float | None:
    """Å from ``usedWavelength``: the intensity-weighted Kα mean (kα1 + ratio·kα2)/(1 + ratio),
    the convention of pymatgen's "CuKa"; kα1 alone when kα2 or the ratio is missing."""
    used = _child(measurement, "usedWavelength")
    if used is None:
        return None

    def number(name: str, *, length: bool = True) -> float | None:
        element = _child(used, name)
        if element is None:
            return None
        value = _xml_float(element, source)
        if not length:
            return value
        unit = (element.get("unit") or "Angstrom").strip()
        if unit.lower() not in _XRDML_LENGTH_UNITS:
            raise XrdsymError(f"{source}: <{name}> has an unknown unit {_preview(unit)}")
        return value * _XRDML_LENGTH_UNITS[unit.lower()]

    alpha1 = number("kAlpha1")
    alpha2 = number("kAlpha2")
    ratio = number("ratioKAlpha2KAlpha1", length=False)
    if alpha1 is None:
        return None
    if alpha2 is None or ratio is None:
        return alpha1
    if not (math.isfinite(ratio) and ratio >= 0):
        raise XrdsymError(f"{source}: <ratioKAlpha2KAlpha1> must be >= 0, not {ratio!r}")
    return (alpha1 + ratio * alpha2) / (1 + ratio)


# ---------------------------------------------------------------------------------------------
# CIF


@dataclass(frozen=True)
class _Block:
    """One CIF data block: ``where`` is "path#name", ``data`` maps lower-case tags to values."""

    where: str
    data: dict[str, str | list[str]]

    def values(self, tag: str) -> list[str]:
        """The tag's values: a loop's column, or a one-item list."""
        value = self.data[tag]
        return list(value) if isinstance(value, list) else [value]


def _parse_cif(text: str, source: str) -> list[MeasuredPattern]:
    """Powder patterns in a CIF (IUCr Rietveld style): one per data block that holds one.

    A block holds a pattern when it has intensities (``_pd_meas_counts_total``,
    ``_pd_meas_intensity_total``, ``_pd_proc_intensity_total`` or ``_pd_proc_intensity_net``,
    the first present wins; net intensities are clipped at 0); its 2θ come from
    ``_pd_meas_2theta_scan``, ``_pd_proc_2theta_corrected``, ``_pd_meas_angle_2theta`` or
    ``_pd_{meas,proc}_2theta_range_{min,max,inc}``. The wavelength is the block's
    ``_diffrn_radiation_wavelength`` (weighted by ``_wt`` when a loop gives several) or
    ``_pd_proc_wavelength``, else the first block of the file that states one. Blocks of
    calculated data (see :func:`_is_calculated`) are left out, each with a
    CalculatedBlockSkipped warning, and give no wavelength to the others. Tags match
    case-insensitively, as in CIF. Raises NoPowderData when no block holds a pattern.
    """
    blocks = []
    for block in _cif_blocks(text, source):
        if _is_calculated(block):
            warnings.warn(
                f"skipped calculated block {block.where} (simulated powder data, not measured)",
                CalculatedBlockSkipped,
                stacklevel=3,
            )
        else:
            blocks.append(block)
    patterns = []
    for block in blocks:
        intensity_tag = next((t for t in CIF_INTENSITY_TAGS if t in block.data), None)
        if intensity_tag is None:
            continue
        intensities = _cif_floats(block, intensity_tag)
        if intensity_tag == CIF_NET_INTENSITY_TAG:
            intensities = np.clip(intensities, 0.0, None)
        two_theta = _cif_two_theta(block, intensities.size)
        wavelength = _cif_wavelength(block)
        if wavelength is None:
            wavelength = next((w for b in blocks if (w := _cif_wavelength(b)) is not None), None)
        patterns.append(validate(two_theta, intensities, wavelength, block.where))
    if not patterns:
        raise NoPowderData(f"{source}: holds no powder data (_pd_meas_*/_pd_proc_* loops)")
    return patterns


def _is_calculated(block: _Block) -> bool:
    """Whether a block holds calculated powder data and no measured: PLATON's simulated block
    (named ``*_simulated_*``, or marked simulated by publCIF), or calculated intensities
    without measured or processed ones."""
    name = block.where.rpartition("#")[2].lower()
    plot = " ".join(block.values(CIF_PLOT_TAG)) if CIF_PLOT_TAG in block.data else ""
    if CIF_SIMULATED_BLOCK in name or plot.lower().startswith("simulated"):
        return True
    calculated = any(tag in block.data for tag in CIF_CALCULATED_TAGS)
    return calculated and not any(tag in block.data for tag in CIF_INTENSITY_TAGS)


def _cif_blocks(text: str, source: str) -> list[_Block]:
    """Every data block, each parsed by pymatgen's ``CifBlock.from_str``.

    Split here as ``CifFile.from_str`` does, but keeping what it drops: blocks whose name
    contains "powder_pattern" (it skips them) and all of several blocks with one name.
    """
    # Imported here: pymatgen takes over a second to import, and text files do not need it.
    from pymatgen.io.cif import CifBlock

    pieces = re.split(r"^\s*data_", f"x\n{text}", flags=re.MULTILINE)[1:]
    if not pieces:
        raise XrdsymError(f"{source}: not a CIF (no data_ block)")
    blocks = []
    for piece in pieces:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # stray tokens; the values used are checked
                block = CifBlock.from_str(f"data_{piece}")
        except Exception as exc:  # a third-party parser fails in many ways on a broken file
            name = piece.split(maxsplit=1)[0] if piece.strip() else ""
            raise XrdsymError(
                f"{source}: CIF block data_{name[:40]} cannot be parsed ({_one_line(exc)})"
            ) from exc
        data = {tag.lower(): value for tag, value in block.data.items()}
        blocks.append(_Block(f"{source}#{block.header}", data))
    return blocks


def _cif_number(text: str, tag: str, where: str, index: int | None = None) -> float:
    """A CIF number without its standard uncertainty; "?" and "." (missing) are errors."""
    at = "" if index is None else f" at point {index + 1}"
    if text in _CIF_MISSING:
        raise XrdsymError(f"{where}: {tag} is missing ({text!r}){at}")
    match = _CIF_NUMBER_RE.fullmatch(text)
    if not match:
        raise XrdsymError(f"{where}: {tag} value {_preview(text)}{at} is not a number")
    return float(match.group(1))


def _cif_floats(block: _Block, tag: str) -> np.ndarray:
    values = block.values(tag)
    return np.array([_cif_number(v, tag, block.where, i) for i, v in enumerate(values)])


def _cif_scalar(block: _Block, tag: str) -> float:
    values = block.values(tag)
    if len(values) != 1:
        raise XrdsymError(f"{block.where}: {tag} must be a single value, not a loop")
    return _cif_number(values[0], tag, block.where)


def _cif_two_theta(block: _Block, size: int) -> np.ndarray:
    tag = next((t for t in CIF_TWO_THETA_TAGS if t in block.data), None)
    if tag is not None:
        return _cif_floats(block, tag)
    for prefix in CIF_TWO_THETA_RANGES:
        tags = [f"{prefix}_{end}" for end in ("min", "max", "inc")]
        if all(t in block.data for t in tags):
            low, high, inc = (_cif_scalar(block, t) for t in tags)
            return _cif_range(low, high, inc, size, prefix, block.where)
    raise XrdsymError(
        f"{block.where}: powder intensities without 2θ values "
        f"(expected one of {', '.join(CIF_TWO_THETA_TAGS)} or {CIF_TWO_THETA_RANGES[0]}_*)"
    )


def _cif_range(
    low: float, high: float, inc: float, size: int, prefix: str, where: str
) -> np.ndarray:
    """``size`` angles from ``low`` in steps of ``inc``, checked against ``high``."""
    if not (math.isfinite(low) and math.isfinite(high) and math.isfinite(inc) and inc > 0):
        raise XrdsymError(f"{where}: {prefix}_min/_max/_inc must be finite with _inc > 0")
    count = (high - low) / inc + 1
    if abs(count - size) > CIF_RANGE_POINTS_TOL * max(1.0, size):
        raise XrdsymError(
            f"{where}: {prefix}_min/_max/_inc give {count:.6g} points but there are "
            f"{size} intensities"
        )
    return low + inc * np.arange(size)


def _cif_wavelength(block: _Block) -> float | None:
    """The block's wavelength in Å: weighted by ``_wt`` over a loop of several, else the first."""
    tag = next((t for t in CIF_WAVELENGTH_TAGS if t in block.data), None)
    if tag is None:
        return None
    values = block.values(tag)
    if all(v in _CIF_MISSING for v in values):
        return None
    wavelengths = [_cif_number(v, tag, block.where, i) for i, v in enumerate(values)]
    weight_tag = f"{tag}_wt"
    if len(wavelengths) == 1 or weight_tag not in block.data:
        return wavelengths[0]
    weights = [
        _cif_number(w, weight_tag, block.where, i) for i, w in enumerate(block.values(weight_tag))
    ]
    if len(weights) != len(wavelengths):
        raise XrdsymError(
            f"{block.where}: {weight_tag} has {len(weights)} values for "
            f"{len(wavelengths)} wavelengths"
        )
    total = math.fsum(weights)
    if not (math.isfinite(total) and total > 0):
        raise XrdsymError(f"{block.where}: {weight_tag} must add up to a positive number")
    return math.fsum(w * x for w, x in zip(weights, wavelengths, strict=True)) / total
