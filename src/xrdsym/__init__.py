"""xrdsym: crystal system from powder X-ray diffraction patterns."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("xrdsym")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
