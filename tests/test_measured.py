import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymatgen.io.cif import CifWriter

from xrdsym.errors import XrdsymError
from xrdsym.measured import (
    MIN_POINTS,
    CalculatedBlockSkipped,
    MeasuredPattern,
    NoPowderData,
    NotAPattern,
    _read_lines,
    _read_table,
    parse_wavelength,
    read_measured,
    validate,
)

# A small pattern: one peak on a flat background, 40 points 0.05° apart.
TWO_THETA = np.round(10.0 + 0.05 * np.arange(40), 2)
COUNTS = np.round(50 + 1000 * np.exp(-(((TWO_THETA - 11.0) / 0.1) ** 2)))
# (kα1 + ratio·kα2) / (1 + ratio) for the XRDML fixture's Cu tube.
CU_KA1, CU_KA2, CU_RATIO = 1.5405980, 1.5444260, 0.5
CU_KA_MEAN = (CU_KA1 + CU_RATIO * CU_KA2) / (1 + CU_RATIO)

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def write(path, content):
    """Write ``content`` (str or bytes) to ``path`` and return the path."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def xy_text(sep=" ", two_theta=TWO_THETA, counts=COUNTS, extra=""):
    rows = zip(two_theta, counts, strict=True)
    return "\n".join(f"{float(t)!r}{sep}{float(c)!r}{extra}" for t, c in rows)


def read_one(path):
    patterns = read_measured(path)
    assert len(patterns) == 1
    return patterns[0]


def error_of(path):
    """The XrdsymError message of reading ``path``, checked to be one line starting with it."""
    with pytest.raises(XrdsymError) as info:
        read_measured(path)
    message = str(info.value)
    assert message.startswith((f"{path}: ", f"{path}#")), message  # "#block" in a CIF
    assert "\n" not in message and "\r" not in message
    return message


def check_invariants(patterns, path):
    assert patterns
    for pattern in patterns:
        assert isinstance(pattern, MeasuredPattern)
        assert pattern.source.startswith(str(path))
        tt, counts = pattern.two_theta, pattern.intensities
        assert tt.dtype == counts.dtype == np.float64
        assert tt.ndim == counts.ndim == 1
        assert len(tt) == len(counts) >= MIN_POINTS
        assert np.all(np.isfinite(tt)) and np.all(np.isfinite(counts))
        assert np.all(np.diff(tt) > 0)
        assert tt[0] > 0 and tt[-1] < 180
        assert np.all(counts >= 0) and np.any(counts > 0)
        wl = pattern.wavelength
        assert wl is None or (math.isfinite(wl) and wl > 0)


def read_or_error(path):
    """read_measured either gives valid patterns or one clear XrdsymError, nothing else."""
    try:
        patterns = read_measured(path)
    except XrdsymError as exc:
        message = str(exc)
        assert message.startswith((f"{path}: ", f"{path}#")), message  # "#block" in a CIF
        assert "\n" not in message and "\r" not in message
    else:
        check_invariants(patterns, path)


# --- two-column text ---------------------------------------------------------------------------


@pytest.mark.parametrize("sep", [",", "\t", " ", ";", "  ", ", ", " ; ", "\t,", ";\t "])
def test_text_reads_any_separator(tmp_path, sep):
    pattern = read_one(write(tmp_path / "p.xy", xy_text(sep)))
    np.testing.assert_array_equal(pattern.two_theta, TWO_THETA)
    np.testing.assert_array_equal(pattern.intensities, COUNTS)
    assert pattern.wavelength is None
    assert pattern.source == str(tmp_path / "p.xy")


@pytest.mark.parametrize("suffix", [".xy", ".xye", ".dat", ".csv", ".txt", ".XY", ".Csv"])
def test_text_suffixes(tmp_path, suffix):
    pattern = read_one(write(tmp_path / f"p{suffix}", xy_text(",")))
    np.testing.assert_array_equal(pattern.intensities, COUNTS)


def test_text_skips_headers_comments_blank_lines_and_extra_columns(tmp_path):
    lines = xy_text("\t", extra="\t7.07\tjunk").splitlines()
    body = "\n".join(
        [*lines[:10], "", "# a comment inside the data", "   ", "! another", *lines[10:]]
    )
    text = (
        "\ufeff' exported by some instrument\n; semicolon comment\n"
        f"Sample: NaCl, 40 points\n\nAngle Counts Error\n{body}\n\n# end\n"
    )
    pattern = read_one(write(tmp_path / "p.xye", text.replace("\n", "\r\n")))
    np.testing.assert_array_equal(pattern.two_theta, TWO_THETA)
    np.testing.assert_array_equal(pattern.intensities, COUNTS)


def test_text_csv_header_and_quoted_numbers(tmp_path):
    rows = "\n".join(f'"{t}","{c}"' for t, c in zip(TWO_THETA, COUNTS, strict=True))
    pattern = read_one(write(tmp_path / "p.csv", f"2theta,intensity\n{rows}\n"))
    np.testing.assert_array_equal(pattern.intensities, COUNTS)


def test_text_in_latin1_with_a_degree_sign(tmp_path):
    content = f"# 2theta (°), wavelength (Å): 1.5406\n{xy_text()}\n"
    pattern = read_one(write(tmp_path / "p.dat", content.encode("latin-1")))
    assert pattern.wavelength == pytest.approx(1.5406)


@pytest.mark.parametrize(
    ("header", "wavelength"),
    [
        ("# wavelength: 1.5406", 1.5406),
        ("Wavelength = 0.7093 A", 0.7093),
        ("# lambda=1.54056", 1.54056),
        ("! λ = 1.2 Å", 1.2),
        ("# Wavelength (Å): 0.5594", 0.5594),
        ("Wavelength1 = 1.540598", 1.540598),
        ("# lambda2: 1.544426", 1.544426),
        ("# Wavelengths [A]: 0.7093, 0.7136", 0.7093),
        ("# Anode: Cu", 1.54184),
        ("# radiation CuKa", 1.54184),
        ("# radiation: Cu K-alpha1", 1.54056),
        ("; Target: mo", 0.71073),
        ("Tube Co Kb", 1.63079),
        ("2theta,intensity", None),
        ("# Copper sample holder", None),
    ],
)
def test_text_wavelength_from_a_header(tmp_path, header, wavelength):
    pattern = read_one(write(tmp_path / "p.xy", f"{header}\n{xy_text()}\n"))
    assert pattern.wavelength == (None if wavelength is None else pytest.approx(wavelength))


def test_text_number_wins_over_anode(tmp_path):
    text = f"# Anode: Mo\n# wavelength 1.5406\n{xy_text()}\n"
    assert read_one(write(tmp_path / "p.xy", text)).wavelength == pytest.approx(1.5406)


def _lines_with(replace):
    """The fixture's lines with some replaced: {index: new line}."""
    lines = xy_text().splitlines()
    for i, line in replace.items():
        lines[i] = line
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "no data points"),
        ("# only a comment\n\n2theta intensity\n", "no data points"),
        (xy_text().split("\n", 1)[0] + "\n", "too few points (1 < 20)"),
        ("\n".join(xy_text().splitlines()[: MIN_POINTS - 1]), f"too few points ({MIN_POINTS - 1}"),
        (_lines_with({5: "10.25 nan"}), "non-finite intensity value(s), the first (nan) at line 6"),
        (_lines_with({3: "inf 5"}), "non-finite 2θ"),
        (_lines_with({7: "10.35 1e999"}), "non-finite intensity"),
        (
            _lines_with({2: "10.1 -3", 4: "10.2 -1"}),
            "2 negative intensities, the first at 2θ = 10.1",
        ),
        (_lines_with({9: "10.4 5"}), "2θ is not strictly increasing (line 10: 10.4° after 10.4°)"),
        (_lines_with({9: "10.3 5"}), "not strictly increasing (line 10"),
        ("\n".join(f"{t - 10} 5" for t in TWO_THETA), "2θ outside (0, 180) degrees"),
        ("\n".join(f"{t + 170} 5" for t in TWO_THETA), "2θ outside (0, 180) degrees"),
        ("\n".join(f"{t} 0" for t in TWO_THETA), "all intensities are zero"),
        ("# wavelength: 0\n" + xy_text(), "wavelength 0.0 Å is not positive"),
        ("# lambda = -1.5\n" + xy_text(), "wavelength -1.5 Å is not positive"),
        (_lines_with({12: "10.6"}), "line 13 has fewer than 2 numbers ('10.6')"),
        (_lines_with({12: "10.6 abc 4"}), "line 13: 'abc' is not a number"),
        (_lines_with({12: "Angle Counts"}), "line 13: 'Angle' is not a number"),
        (_lines_with({12: "10.6 1_000"}), "line 13: '1_000' is not a number"),
    ],
)
def test_text_bad_input_says_why(tmp_path, content, reason):
    message = error_of(write(tmp_path / "bad.xy", content))
    assert reason in message


# --- XRDML -------------------------------------------------------------------------------------


def xrdml(
    namespace="http://www.xrdml.com/XRDMeasurement/1.5",
    positions=None,
    intensities=COUNTS,
    counts_tag="intensities",
    wavelength=None,
    scans=1,
):
    """A PANalytical XRDML document following the real schema (trimmed)."""
    if positions is None:
        positions = (
            f"<startPosition>{TWO_THETA[0]:.4f}</startPosition>"
            f"<endPosition>{TWO_THETA[-1]:.4f}</endPosition>"
        )
    if wavelength is None:
        wavelength = (
            f'<kAlpha1 unit="Angstrom">{CU_KA1:.7f}</kAlpha1>'
            f'<kAlpha2 unit="Angstrom">{CU_KA2:.7f}</kAlpha2>'
            '<kBeta unit="Angstrom">1.3922500</kBeta>'
            f"<ratioKAlpha2KAlpha1>{CU_RATIO:.4f}</ratioKAlpha2KAlpha1>"
        )
    xmlns = f' xmlns="{namespace}"' if namespace else ""
    values = " ".join(f"{c:g}" for c in intensities)
    scan = f"""
    <scan appendNumber="{{n}}" mode="Continuous" scanAxis="Gonio" status="Completed">
      <header>
        <startTimeStamp>2024-03-04T10:15:02+01:00</startTimeStamp>
        <endTimeStamp>2024-03-04T10:16:30+01:00</endTimeStamp>
        <author><name>lab</name></author>
        <source>
          <applicationSoftware version="6.0">Data Collector</applicationSoftware>
          <instrumentControlSoftware version="6.0">XPERT-PRO</instrumentControlSoftware>
          <instrumentID>0</instrumentID>
        </source>
      </header>
      <dataPoints>
        <positions axis="2Theta" unit="deg">{positions}</positions>
        <positions axis="Omega" unit="deg">
          <startPosition>5.0000</startPosition>
          <endPosition>5.9750</endPosition>
        </positions>
        <commonCountingTime unit="seconds">0.50</commonCountingTime>
        <{counts_tag} unit="counts">{{values}}</{counts_tag}>
      </dataPoints>
    </scan>"""
    scans_xml = "".join(
        scan.format(n=n, values=values if n == 0 else " ".join(["7"] * len(intensities)))
        for n in range(scans)
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<xrdMeasurements{xmlns} xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" status="Completed">
  <comment>
    <entry>Configuration=Reflection-Transmission Spinner, Owner=User-1</entry>
  </comment>
  <sample type="To be analyzed">
    <id>NaCl-01</id>
    <name>NaCl</name>
  </sample>
  <xrdMeasurement measurementType="Scan" status="Completed" sampleMode="Reflection">
    <comment><entry>Goniometer scan</entry></comment>
    <usedWavelength intended="K-Alpha 1">{wavelength}</usedWavelength>
    <incidentBeamPath>
      <radiationSource>
        <xRayTube id="1" name="Cu LFF">
          <tension unit="kV">45</tension>
          <current unit="mA">40</current>
          <anodeMaterial>Cu</anodeMaterial>
        </xRayTube>
      </radiationSource>
    </incidentBeamPath>{scans_xml}
  </xrdMeasurement>
</xrdMeasurements>
"""


def test_xrdml_start_end_positions_and_weighted_wavelength(tmp_path):
    pattern = read_one(write(tmp_path / "scan.xrdml", xrdml()))
    np.testing.assert_allclose(pattern.two_theta, TWO_THETA, atol=1e-12)
    np.testing.assert_array_equal(pattern.intensities, COUNTS)
    assert pattern.wavelength == pytest.approx(CU_KA_MEAN)
    assert pattern.wavelength == pytest.approx(parse_wavelength("CuKa"), abs=1e-4)


@pytest.mark.parametrize(
    "namespace",
    [
        "http://www.xrdml.com/XRDMeasurement/1.0",
        "http://www.xrdml.com/XRDMeasurement/2.1",
        None,
    ],
)
def test_xrdml_any_namespace_list_positions_and_counts(tmp_path, namespace):
    listed = "<listPositions>" + " ".join(map(str, TWO_THETA)) + "</listPositions>"
    content = xrdml(namespace, positions=listed, counts_tag="counts")
    pattern = read_one(write(tmp_path / "scan.XRDML", content))
    np.testing.assert_array_equal(pattern.two_theta, TWO_THETA)
    np.testing.assert_array_equal(pattern.intensities, COUNTS)


def test_xrdml_only_kalpha1(tmp_path):
    content = xrdml(wavelength='<kAlpha1 unit="Angstrom">0.7093</kAlpha1>')
    assert read_one(write(tmp_path / "s.xrdml", content)).wavelength == pytest.approx(0.7093)


def test_xrdml_without_kalpha1_has_no_wavelength(tmp_path):
    content = xrdml(wavelength="<kBeta>1.39225</kBeta>")
    assert read_one(write(tmp_path / "s.xrdml", content)).wavelength is None


def test_xrdml_several_scans_reads_the_first(tmp_path):
    pattern = read_one(write(tmp_path / "s.xrdml", xrdml(scans=3)))
    np.testing.assert_array_equal(pattern.intensities, COUNTS)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("<xrdMeasurements><xrdMeasurement>", "not valid XML"),
        ("no xml at all", "not valid XML"),
        ('<?xml version="1.0"?><html/>', "not an XRDML file (root element <html>"),
        (
            xrdml().replace("<scan ", "<notascan ").replace("</scan>", "</notascan>"),
            "no <xrdMeasurement>/<scan>",
        ),
        (xrdml().replace('axis="2Theta"', 'axis="Chi"'), 'no <positions axis="2Theta">'),
        (xrdml(counts_tag="values"), "no <intensities> or <counts>"),
        (xrdml(intensities=COUNTS[:5]), "too few points (5 < 20)"),
        (xrdml(positions="<listPositions>" + "10 " * 3 + "</listPositions>"), "lengths differ"),
        (xrdml(positions="<listPositions>" + " 10" * 40 + "</listPositions>"), "not strictly"),
        (xrdml(positions="<startPosition>1</startPosition>"), "neither <listPositions> nor"),
        (xrdml().replace("<endPosition>11.9500", "<endPosition>x"), "<endPosition> holds 'x"),
        (xrdml(intensities=-COUNTS), "40 negative intensities"),
        (xrdml().replace(' unit="counts">50', ' unit="counts">nan'), "non-finite intensity"),
        (xrdml(wavelength='<kAlpha1 unit="furlong">1</kAlpha1>'), "unknown unit 'furlong'"),
        (xrdml(wavelength="<kAlpha1>-1</kAlpha1>"), "wavelength -1.0 Å is not positive"),
    ],
)
def test_xrdml_bad_input_says_why(tmp_path, content, reason):
    message = error_of(write(tmp_path / "bad.xrdml", content))
    assert reason in message


# --- CIF ---------------------------------------------------------------------------------------

POWDER_LOOP = "\n".join(
    f"{i + 1:4d} {t:7.2f} {int(c)}({max(1, round(math.sqrt(c)))}) {c * 0.98:.1f}"
    for i, (t, c) in enumerate(zip(TWO_THETA, COUNTS, strict=True))
)

# An IUCr-journal-style Rietveld CIF: publication block, phase block, powder pattern block.
RIETVELD_CIF = f"""#\\#CIF_1.1
# Generated for the tests in the style of a GSAS Rietveld CIF

data_global
_journal_name_full 'Acta Crystallographica Section E'
_publ_section_title
;
Sodium chloride from laboratory powder data
;
_publ_contact_author_name 'A. N. Author'

data_NaCl_phase_1
_pd_block_id 2024-03-04T10:15|NaCl_phase1|A.N.Author|xrdsym
_pd_phase_name NaCl
_chemical_formula_sum 'Cl Na'
_cell_length_a 5.6402(2)
_cell_length_b 5.6402(2)
_cell_length_c 5.6402(2)
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'F m -3 m'
_symmetry_Int_Tables_number 225
loop_
_symmetry_equiv_pos_as_xyz
'x, y, z'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
_atom_site_U_iso_or_equiv
Na1 Na 0 0 0 1 0.0150(3)
Cl1 Cl 0.5 0.5 0.5 1 0.0120(2)

data_NaCl_powder_pattern
_pd_block_id 2024-03-04T10:15|NaCl_H_01|A.N.Author|Xpert
_pd_block_diffractogram_id 2024-03-04T10:15|NaCl_H_01|A.N.Author|Xpert
_diffrn_radiation_type 'Cu K\\a'
_diffrn_radiation_probe x-ray
loop_
_diffrn_radiation_wavelength
_diffrn_radiation_wavelength_wt
_diffrn_radiation_wavelength_id
1.540593 1.0 1
1.544427 0.5 2
_pd_meas_number_of_points {len(TWO_THETA)}
_pd_proc_ls_prof_R_factor 0.0712
loop_
_pd_proc_point_id
_pd_meas_2theta_scan
_pd_meas_counts_total
_pd_calc_intensity_total
{POWDER_LOOP}
"""
CIF_WAVELENGTH = (1.540593 + 0.5 * 1.544427) / 1.5


def range_block(name="range", prefix="_pd_meas", intensity_tag="_pd_meas_intensity_total"):
    counts = "\n".join(f"{c:.1f}" for c in COUNTS)
    return f"""
data_{name}
{prefix}_2theta_range_min {TWO_THETA[0]:.2f}
{prefix}_2theta_range_max {TWO_THETA[-1]:.2f}
{prefix}_2theta_range_inc 0.05
loop_
{intensity_tag}
{counts}
"""


def test_cif_rietveld_powder_block(tmp_path):
    path = write(tmp_path / "paper.cif", RIETVELD_CIF)
    pattern = read_one(path)
    assert pattern.source == f"{path}#NaCl_powder_pattern"
    np.testing.assert_allclose(pattern.two_theta, TWO_THETA)
    np.testing.assert_array_equal(pattern.intensities, COUNTS)  # "1050(32)" -> 1050
    assert pattern.wavelength == pytest.approx(CIF_WAVELENGTH)


@pytest.mark.parametrize(
    ("prefix", "tag"),
    [("_pd_meas", "_pd_meas_intensity_total"), ("_pd_proc", "_pd_proc_intensity_total")],
)
def test_cif_range_with_wavelength_from_another_block(tmp_path, prefix, tag):
    content = "data_global\n_diffrn_radiation_wavelength 0.7093(1)\n" + range_block(
        "r", prefix, tag
    )
    pattern = read_one(write(tmp_path / "range.CIF", content))
    np.testing.assert_allclose(pattern.two_theta, TWO_THETA, atol=1e-9)
    np.testing.assert_array_equal(pattern.intensities, COUNTS)
    assert pattern.wavelength == pytest.approx(0.7093)
    assert pattern.source.endswith("#r")


def test_cif_several_powder_blocks_and_case_insensitive_tags(tmp_path):
    content = RIETVELD_CIF + range_block("second").replace("_pd_meas_2theta", "_PD_MEAS_2Theta")
    patterns = read_measured(write(tmp_path / "two.cif", content))
    assert [p.source.split("#")[1] for p in patterns] == ["NaCl_powder_pattern", "second"]
    assert patterns[1].wavelength == pytest.approx(CIF_WAVELENGTH)  # from the first block


def test_cif_structure_only_is_no_powder_data(tmp_path, rock_salt):
    path = write(tmp_path / "nacl.cif", str(CifWriter(rock_salt)))
    with pytest.raises(NoPowderData) as info:
        read_measured(path)
    assert str(info.value) == f"{path}: holds no powder data (_pd_meas_*/_pd_proc_* loops)"


def test_cif_calculated_blocks_are_skipped_with_a_warning(tmp_path):
    """PLATON's simulated block (named *_simulated_*, marked simulated by publCIF) is left out
    even with intensities the reader would take, and gives the measured block no wavelength;
    so is a block of calculated intensities alone."""
    platon = range_block("NaCl_phase_1_simulated_0.71073", "_pd_proc", "_pd_proc_intensity_total")
    platon = platon.replace(
        "_pd_proc_2theta",
        "_publcif_pd_cifplot 'simulated 2021-03-25'\n"
        "_diffrn_radiation_wavelength 0.71073\n_pd_proc_2theta",
        1,
    )
    calculated = range_block("fit", "_pd_proc", "_pd_calc_intensity_total")
    content = RIETVELD_CIF.replace("1.540593 1.0 1\n1.544427 0.5 2", "? 1.0 1")
    path = write(tmp_path / "paper.cif", content + platon + calculated)
    with pytest.warns(CalculatedBlockSkipped) as caught:
        pattern = read_one(path)
    assert pattern.source == f"{path}#NaCl_powder_pattern" and pattern.wavelength is None
    assert [str(w.message) for w in caught] == [
        f"skipped calculated block {path}#{name} (simulated powder data, not measured)"
        for name in ("NaCl_phase_1_simulated_0.71073", "fit")
    ]


def test_cif_net_intensities_dipping_below_zero_are_clipped(tmp_path):
    """Net intensities have the background subtracted: noise below zero is clipped to 0."""
    net = COUNTS - 60  # the flat background is 50 counts
    block = range_block("net", "_pd_proc", "_pd_proc_intensity_net")
    block = block.replace("\n".join(f"{c:.1f}" for c in COUNTS), "\n".join(f"{c:.1f}" for c in net))
    pattern = read_one(write(tmp_path / "net.cif", block))
    np.testing.assert_array_equal(pattern.intensities, np.clip(net, 0, None))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("file,crystal_system\nscan.xy,cubic\n", "no data points"),
        (b"\x00\x01binary", "not a text file"),
    ],
)
def test_a_file_without_any_pattern_is_not_a_pattern(tmp_path, content, reason):
    with pytest.raises(NotAPattern, match=reason):
        read_measured(write(tmp_path / "labels.csv", content))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("just some text\n", "not a CIF (no data_ block)"),
        ("data_x\nloop_\n_a\n_b\n1 2 3\n", "CIF block data_x cannot be parsed"),
        (RIETVELD_CIF.replace(" 1050(32) ", " ? "), "_pd_meas_counts_total is missing ('?') at"),
        (RIETVELD_CIF.replace(" 1050(32) ", " 1O50 "), "'1O50' at point"),
        (RIETVELD_CIF.replace("_pd_meas_2theta_scan", "_pd_meas_time_of_flight"), "without 2θ"),
        (range_block().replace("range_inc 0.05", "range_inc 0.1"), "give 20.5 points but there"),
        (range_block().replace("range_inc 0.05", "range_inc 0"), "_inc > 0"),
        (
            RIETVELD_CIF.replace("0.5 2", "-1.0 2"),
            "_diffrn_radiation_wavelength_wt must add up to a positive number",
        ),
        (RIETVELD_CIF.replace(" 11.00 ", " 12.00 "), "not strictly increasing"),
    ],
)
def test_cif_bad_input_says_why(tmp_path, content, reason):
    message = error_of(write(tmp_path / "bad.cif", content))
    assert reason in message


# --- any file ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pattern.raw", "pattern.brml", "pattern"])
def test_unknown_suffix_names_the_supported_ones(tmp_path, name):
    message = error_of(write(tmp_path / name, xy_text()))
    assert "unsupported file type" in message
    assert ".xy .xye .dat .csv .txt .xrdml .cif" in message


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("garbage.xy", "not a text file"),
        ("garbage.cif", "not a text file"),
        ("garbage.xrdml", "not valid XML"),
    ],
)
def test_binary_garbage(tmp_path, name, reason):
    rng = np.random.default_rng(0)
    garbage = b"\x00\xff\xfe" + rng.integers(0, 256, 500, dtype=np.uint8).tobytes()
    assert reason in error_of(write(tmp_path / name, garbage))


def test_directory_and_missing_file(tmp_path):
    (tmp_path / "folder.xy").mkdir()
    assert "cannot read (Is a directory)" in error_of(tmp_path / "folder.xy")
    assert "cannot read (No such file or directory)" in error_of(tmp_path / "missing.xrdml")
    assert "cannot read" in error_of(str(tmp_path / "missing.cif"))  # a str path as well


def test_validate_checks_lengths_and_returns_read_only_arrays():
    with pytest.raises(XrdsymError, match=r"^here: lengths differ \(40 2θ values, 39"):
        validate(TWO_THETA, COUNTS[:-1], None, "here")
    with pytest.raises(XrdsymError, match=r"^here: 2θ and intensities must be 1-D"):
        validate(np.ones((2, 20)), COUNTS, None, "here")
    pattern = validate(list(TWO_THETA), COUNTS.astype(int), 1.5, "here")
    assert pattern.intensities.dtype == np.float64 and pattern.wavelength == 1.5
    with pytest.raises(ValueError, match="read-only"):
        pattern.two_theta[0] = 1.0


# --- wavelengths -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "angstrom"),
    [
        (1.5406, 1.5406),
        (1, 1.0),
        (np.float32(0.5), 0.5),
        ("0.7093", 0.7093),
        (" 1.54 Å", 1.54),
        ("1.5406 A", 1.5406),
        ("CuKa", 1.54184),
        ("cuka1", 1.54056),
        ("MOKA", 0.71073),
        ("CoKa", 1.79026),
        ("FeKa", 1.93735),
        ("AgKa", 0.560885),
        ("CrKa2", 2.29361),
        ("Cu K-alpha", 1.54184),
        ("Mo Kα1", 0.70930),
        ("Cu", 1.54184),
        ("CuKb1", 1.39222),
    ],
)
def test_parse_wavelength(value, angstrom):
    assert parse_wavelength(value) == pytest.approx(angstrom)


@pytest.mark.parametrize("value", ["XxKa", "copper", "", "CuKb", 0, -1.5, math.nan, math.inf, True])
def test_parse_wavelength_rejects(value):
    with pytest.raises(XrdsymError) as info:
        parse_wavelength(value)
    message = str(info.value)
    assert "\n" not in message
    if isinstance(value, str):
        assert "CuKa, CuKa2, CuKa1" in message and "AgKa" in message  # lists the known names


# --- property-based ----------------------------------------------------------------------------

SEPARATORS = [",", "\t", " ", ";", ", ", " ; ", "\t\t", " ,\t"]
_number_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-5, 200).map(str),
    st.sampled_from(["nan", "-inf", "1e999", ".", "?", "1.2.3", "1(2)", "", "abc", "0x10"]),
)
_text_line = st.one_of(
    st.tuples(_number_text, st.sampled_from(SEPARATORS), _number_text).map("".join),
    st.text(max_size=30),
    st.sampled_from(["# wavelength: 1.5", "# Anode: Cu", "# lambda = -2", "2theta,intensity"]),
)


@FUZZ
@given(
    lines=st.lists(_text_line, max_size=40),
    end=st.sampled_from(["\n", "\r\n", "\r"]),
    valid_prefix=st.integers(0, len(TWO_THETA)),
)
def test_fuzz_text_gives_patterns_or_a_clear_error(tmp_path_factory, lines, end, valid_prefix):
    path = tmp_path_factory.mktemp("fuzz") / "random.xy"
    head = xy_text().splitlines()[:valid_prefix]  # valid data, so the random lines follow data
    write(path, end.join(head + lines))
    read_or_error(path)


@FUZZ
@given(content=st.binary(max_size=300), suffix=st.sampled_from([".xy", ".csv", ".xrdml", ".cif"]))
def test_fuzz_random_bytes_give_a_clear_error(tmp_path_factory, content, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"random{suffix}"
    write(path, content)
    read_or_error(path)


@st.composite
def mutations(draw, original: bytes) -> bytes:
    """``original`` after 1 to 4 random edits: truncation, byte flips, lost or doubled lines."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(["truncate", "flip", "delete", "duplicate", "digit"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if edit == "truncate":
            del data[at:]
        elif edit == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif edit == "digit":
            data[at] = draw(st.sampled_from(b"0123456789-.e ?"))
        else:
            lines = bytes(data).split(b"\n")
            i = at % len(lines)
            lines[i : i + 1] = [] if edit == "delete" else [lines[i], lines[i]]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


_VALID = {
    ".xrdml": xrdml().encode(),
    ".cif": RIETVELD_CIF.encode(),
    ".xy": ("# Anode: Cu\nAngle Counts\n" + xy_text(";", extra=" 3.1") + "\n").encode(),
}


@FUZZ
@pytest.mark.parametrize("suffix", sorted(_VALID))
@given(data=st.data())
def test_fuzz_mutated_files_give_patterns_or_a_clear_error(tmp_path_factory, suffix, data):
    path = tmp_path_factory.mktemp("fuzz") / f"mutated{suffix}"
    write(path, data.draw(mutations(_VALID[suffix])))
    read_or_error(path)


@FUZZ
@given(
    start=st.floats(0.01, 20),
    steps=st.lists(st.floats(1e-3, 1.0), min_size=MIN_POINTS - 1, max_size=150),
    data=st.data(),
    sep=st.sampled_from(SEPARATORS),
    header=st.booleans(),
    third=st.booleans(),
)
def test_round_trip_random_arrays(tmp_path_factory, start, steps, data, sep, header, third):
    two_theta = start + np.concatenate([[0.0], np.cumsum(steps)])
    n = len(two_theta)
    counts = np.array(data.draw(st.lists(st.floats(0, 1e9), min_size=n, max_size=n)))
    counts[n // 2] += 1.0  # not all zero
    text = xy_text(sep, two_theta, counts, extra=f"{sep}0.5" if third else "")
    if header:
        text = "# wavelength = 1.5406\n2theta intensity\n" + text
    path = write(tmp_path_factory.mktemp("round") / "trip.xy", text)
    pattern = read_one(path)
    np.testing.assert_array_equal(pattern.two_theta, two_theta)
    np.testing.assert_array_equal(pattern.intensities, counts)
    assert pattern.wavelength == (1.5406 if header else None)


@pytest.mark.parametrize("separator", [";", "\t", " "])
def test_decimal_commas(tmp_path, separator):
    lines = [
        f"{t:.2f}{separator}{c:.1f}".replace(".", ",")
        for t, c in zip(TWO_THETA, COUNTS, strict=True)
    ]
    path = write(tmp_path / "scan.csv", "2Theta;Counts\n" + "\n".join(lines))

    (pattern,) = read_measured(path)

    np.testing.assert_allclose(pattern.two_theta, TWO_THETA)
    np.testing.assert_allclose(pattern.intensities, COUNTS)


def test_comma_separated_integers_are_not_decimal_commas(tmp_path):
    lines = [f"{t:.2f},{round(c)}" for t, c in zip(TWO_THETA, COUNTS, strict=True)]
    path = write(tmp_path / "scan.csv", "\n".join(lines))

    (pattern,) = read_measured(path)

    np.testing.assert_allclose(pattern.intensities, np.round(COUNTS))


@FUZZ
@given(lines=st.lists(_text_line, min_size=1, max_size=40), decimal_comma=st.booleans())
def test_table_reader_agrees_with_line_reader(lines, decimal_comma):
    """Whenever the one-go numpy reader accepts the data lines, it reads what the line-by-line
    reader reads."""
    table = _read_table(lines, decimal_comma)
    if table is None:
        return
    try:
        two_theta, intensities, _ = _read_lines(lines, 1, decimal_comma, [], "random.xy")
    except XrdsymError:
        pytest.fail("the table reader accepted lines the line reader refuses")
    np.testing.assert_array_equal(table[:, 0], two_theta)
    np.testing.assert_array_equal(table[:, 1], intensities)


def test_a_line_of_separators_alone_is_blank(tmp_path):
    """Found by the table-reader fuzz test: "," alone between data lines is skipped by both
    readers, as a blank line."""
    lines = xy_text(sep=",").splitlines()
    lines.insert(3, ",")
    (pattern,) = read_measured(write(tmp_path / "scan.csv", "\n".join(lines)))
    np.testing.assert_allclose(pattern.two_theta, TWO_THETA)
    assert _read_table(["0.0,0.0", ","], False) is not None
    two_theta, _, _ = _read_lines(["0.0,0.0", ","], 1, False, [], "random.xy")
    assert two_theta == [0.0]
