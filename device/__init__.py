"""device package: the device listener (`iothub-device`, `python -m device`)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("iothub-lab")
except PackageNotFoundError:  # running from a checkout that was not installed
    __version__ = "0.0.0"
