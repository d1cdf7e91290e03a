"""mailprobe agent: scheduling, accounting, metrics, HTTP, CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mailprobe")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
