"""fusion-edge: deploy multimodal sports models to edge boxes at the pitch.

Importing this package stays lean: it loads neither torch, bleak, TensorRT nor CUDA.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fusion_edge.errors import FusionEdgeError

try:
    __version__ = version("fusion-edge")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

__all__ = ["FusionEdgeError", "__version__"]
