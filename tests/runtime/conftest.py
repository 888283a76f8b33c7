"""Field-kit fixtures: one tiny exported bundle for the whole test session, and an offline kit.

``kit_bundle`` exports the session's tiny trained run (tests/conftest.py) as FP32 + INT8 with
few latency runs; every field-kit test (tests/runtime and tests/cli) shares it through
:func:`shared_kit_bundle`, which builds it once per pytest session.

The offline kit the fault tests drive is in ``offline_kit.py`` (a module of its own, so that
importing it never picks up another folder's ``conftest``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_BUNDLE_KEY = pytest.StashKey[Path]()


def shared_kit_bundle(config: pytest.Config, factory: pytest.TempPathFactory, run: Path, data: Path) -> Path:
    """The session's field-kit bundle (FP32 + INT8), exported on first use."""
    if _BUNDLE_KEY in config.stash:
        return config.stash[_BUNDLE_KEY]
    from fusion_edge.export.pipeline import ExportConfig, export

    out = factory.mktemp("kit-bundle") / "bundle"
    cfg = ExportConfig(precisions=("fp32", "int8"), calibration_windows=32, latency_runs=1, squad_size=5)
    export(run, data, out, cfg)
    config.stash[_BUNDLE_KEY] = out
    return out


@pytest.fixture(scope="session")
def kit_bundle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, trained_run: Any) -> Path:
    """A verified bundle folder with an FP32 and an INT8 (onnxruntime CPU) variant."""
    return shared_kit_bundle(request.config, tmp_path_factory, trained_run.path, trained_run.data)
