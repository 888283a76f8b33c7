"""Shared simulated pods and recordings for the calibration tests (deterministic seeds)."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_edge.calibration.recording import ImuRecording
from fusion_edge.calibration.simulate import (
    SimulatedImu,
    random_imu,
    record_random_poses,
    record_six_position,
)


@pytest.fixture(scope="session")
def pod() -> SimulatedImu:
    """A pod with typical MEMS errors."""
    return random_imu(np.random.default_rng(11))


@pytest.fixture(scope="session")
def random_pose_recording(pod: SimulatedImu) -> ImuRecording:
    """20 random still poses then a 20 s tumble (9-axis)."""
    return record_random_poses(pod, np.random.default_rng(12), n_poses=20, tumble_s=20.0)


@pytest.fixture(scope="session")
def six_position_recording(pod: SimulatedImu) -> ImuRecording:
    """The six faces on a table (0.3 deg tilt) then a 20 s tumble (9-axis)."""
    return record_six_position(pod, np.random.default_rng(13), tumble_s=20.0)
