"""Square images from 1D patterns, as the paper fed them to MobileNetV2.

The paper does not say how a 1D pattern became a square image. The method used here,
``raster``, keeps every peak resolvable: the pattern is resampled to ``size * size`` evenly
spaced 2θ values and laid out row by row (left to right, top to bottom, low to high 2θ), each
pixel coloured by its intensity through a matplotlib colormap, as ``imshow`` would. At the
default 64 x 64 a pixel spans 90 / 4096 = 0.022 degrees 2θ, so a peak broadened by σ = 5
points of a 0.02 degree grid is about ten pixels wide.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import matplotlib
import numpy as np
from PIL import Image


def raster(intensities: np.ndarray, size: int) -> np.ndarray:
    """Pattern resampled (linearly) to ``size * size`` points, as a size x size array."""
    intensities = np.asarray(intensities, dtype=float)
    source = np.linspace(0.0, 1.0, len(intensities))
    target = np.linspace(0.0, 1.0, size * size)
    return np.interp(target, source, intensities).reshape(size, size)


def colorize(values: np.ndarray, colormap: str) -> np.ndarray:
    """Values in [0, 1] as an RGB uint8 image through a matplotlib colormap."""
    rgba = matplotlib.colormaps[colormap](np.clip(values, 0.0, 1.0), bytes=True)
    return rgba[..., :3]


def pattern_image(intensities: np.ndarray, size: int, colormap: str) -> np.ndarray:
    """The square RGB image (size x size x 3, uint8) of one normalised pattern."""
    return colorize(raster(intensities, size), colormap)


def image_file_name(record_id: str) -> str:
    """The PNG file name of a record: its id percent-encoded, so that ids holding a path
    (``cif_dir`` ids such as ``sub/x.cif``) stay one file and can be read back exactly."""
    return quote(record_id, safe="") + ".png"


def write_png(path: Path, image: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG, pixel for pixel."""
    Image.fromarray(image, mode="RGB").save(path, format="PNG")
