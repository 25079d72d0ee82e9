import matplotlib
import numpy as np
from PIL import Image

from xrdsym.imaging import (
    colorize,
    image_file_name,
    pattern_image,
    raster,
    write_png,
)


def test_raster_lays_the_pattern_out_row_by_row():
    pattern = np.linspace(0, 1, 16)
    image = raster(pattern, 4)
    assert image.shape == (4, 4)
    assert np.allclose(image.ravel(), pattern)  # same length: no resampling
    assert image[0, 0] == 0 and image[-1, -1] == 1 and image[0, 1] < image[1, 0]


def test_raster_keeps_a_default_width_peak():
    # Default settings: 4501 grid points, sigma = 5 points, 64 x 64 image.
    pattern = np.zeros(4501)
    pattern[1980:2021] = np.exp(-0.5 * ((np.arange(41) - 20) / 5.0) ** 2)
    image = raster(pattern, 64)
    assert image.max() > 0.97  # the peak top survives resampling
    assert np.count_nonzero(image > 0.5) >= 9  # and spans several pixels (FWHM ~ 10.7)


def test_colorize_uses_the_matplotlib_colormap():
    rgb = colorize(np.array([[0.0, 1.0]]), "viridis")
    expected = matplotlib.colormaps["viridis"]([0.0, 1.0], bytes=True)[:, :3]
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 2, 3)
    assert np.array_equal(rgb[0], expected)


def test_png_round_trip_keeps_ids_with_paths(tmp_path):
    image = pattern_image(np.linspace(0, 1, 100), 32, "viridis")
    # Ids that hold a path (cif_dir) make one file each.
    path = tmp_path / image_file_name("sub/id0.cif#2")
    write_png(path, image)
    assert path.parent == tmp_path and path.name == "sub%2Fid0.cif%232.png"
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), image)
