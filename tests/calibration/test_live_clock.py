"""`calibrate clock` live: pods over the real BLE transport (bumble behind bleak)."""

from __future__ import annotations

import asyncio

from typer.testing import CliRunner

from fusion_edge.calibration.live import listen_clocks


def test_live_clock_fits_every_connected_pod():
    # The in-process link delivers on the simulated pods' 10 ms firmware tick, so over a short
    # listen the envelope is good to about a millisecond; drift accuracy against realistic
    # +-50 ppm clocks over 60 s is checked by benchmarks/calibration_accuracy.py.
    alignment = asyncio.run(listen_clocks(simulate=3, seconds=12.0, drift_ppm=50.0, seed=5))
    estimates = {str(e.device): e for e in alignment.estimates()}
    assert set(estimates) == {f"F0:C1:0C:00:00:{i:02X}" for i in range(3)}
    for est in estimates.values():
        assert est.observations >= 90  # ~8 notifications a second for 12 s
        assert abs(est.drift_ppm) <= 200.0
        assert est.spread_ns < 5e6
    assert alignment.alignment_error_ns() < 5e6


def test_clock_command_needs_exactly_one_source():
    from fusion_edge.cli.app import app

    res = CliRunner().invoke(app, ["calibrate", "clock"])
    assert res.exit_code == 2
    assert "one of --recording" in res.output
