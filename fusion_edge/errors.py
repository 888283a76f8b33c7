"""One exception root for the whole toolkit.

Library code raises these; only the CLI turns them into exit codes and messages. Each message
says what is wrong and what to do about it.
"""

from __future__ import annotations


class FusionEdgeError(Exception):
    """Root of every error fusion-edge raises on purpose."""


class MissingDependencyError(FusionEdgeError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str, purpose: str, how: str | None = None) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed. "
            + (how or f"Install it with: pip install 'fusion-edge[{extra}]'")
        )


#: How to get TensorRT: on a Jetson it comes with JetPack and must not come from pip.
TENSORRT_HOW = (
    "On a Jetson it comes with JetPack: sudo apt install nvidia-jetpack (the Python bindings "
    "are python3-libnvinfer), not pip. On another machine with an NVIDIA GPU: "
    "pip install 'fusion-edge[gpu]'"
)


class ConfigError(FusionEdgeError):
    """A configuration file or option is invalid."""


class DatasetError(FusionEdgeError):
    """A dataset on disk is missing, malformed or inconsistent with its dataset.json."""


class CheckpointError(FusionEdgeError):
    """A training run folder / checkpoint is missing, corrupt or from another version."""


class ScenarioError(FusionEdgeError):
    """A sport scenario is unknown or its definition is invalid."""


class ProtocolError(FusionEdgeError):
    """A pod packet or GNSS sentence is malformed (bad CRC, truncated, unknown version)."""


class TransportError(FusionEdgeError):
    """A sensor transport (BLE, serial) failed: device missing, unplugged, not paired."""


class CalibrationError(FusionEdgeError):
    """Calibration data cannot determine what was asked for."""


class BundleError(FusionEdgeError):
    """An exported bundle is missing, corrupt, or does not match the kit."""


class BackendError(FusionEdgeError):
    """An inference backend failed to load or to run."""
