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


def test_ctrl_c_during_a_live_listen_reports_what_was_heard():
    """An operator who stops a minute's listen early gets the fit so far, not a traceback."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fusion_edge", "calibrate", "clock", "--simulate", "2", "--seconds", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        line = ""
        while "listening to 2 simulated pods" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "the command ended before it started listening"
            assert time.monotonic() < deadline, "the simulated pods never started"
        time.sleep(4.0)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, rest
    assert "stopped after" in rest
    assert "Traceback" not in rest
    for i in range(2):
        assert f"F0:C1:0C:00:00:{i:02X}" in rest
    assert "cross-device alignment error" in rest
