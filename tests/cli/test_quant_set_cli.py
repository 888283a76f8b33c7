"""`fusion-edge calibrate quant-set` writes the export's INT8 calibration windows as an .npz."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from fusion_edge.cli.app import app


def test_quant_set_writes_a_stratified_normalized_npz_without_pickle(trained_run, tmp_path):
    out = tmp_path / "calib.npz"
    res = CliRunner().invoke(
        app, ["calibrate", "quant-set", str(trained_run.path), "--data", str(trained_run.data),
              "--out", str(out), "--windows", "48"],
    )
    assert res.exit_code == 0, res.output
    with np.load(out, allow_pickle=False) as z:
        keys = set(z.files)
        imu = next(z[k] for k in keys if "imu" in k)
    assert imu.ndim == 3 and imu.shape[0] == 48 and imu.dtype == np.float32
    # normalized with the run's training statistics: per-channel means near 0
    assert np.abs(imu.mean(axis=(0, 2))).max() < 1.5


def test_quant_set_refuses_a_dataset_without_the_runs_training_players(trained_run, tmp_path):
    from fusion_edge.scenarios import get_scenario
    from fusion_edge.toolkit.scenario_dataset import simulate_dataset

    other = tmp_path / "other"
    simulate_dataset([get_scenario("rondo")], other, seed=99, duration_s=30.0)
    res = CliRunner().invoke(
        app, ["calibrate", "quant-set", str(trained_run.path), "--data", str(other), "--out", str(tmp_path / "x.npz")],
    )
    assert res.exit_code == 2
    assert "training players" in res.output


def test_quant_set_checks_out_before_it_reads_the_run_or_the_dataset(tmp_path):
    """An --out that cannot be written is refused first, not after seconds of choosing windows."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("an operator's file\n")
    for out, expected in ((blocker / "calib.npz", "cannot write the calibration set"), (tmp_path, "is a folder")):
        res = CliRunner().invoke(
            app, ["calibrate", "quant-set", str(tmp_path / "no-run"), "--data", str(tmp_path / "no-data"),
                  "--out", str(out)],
        )
        assert res.exit_code == 2, res.output
        assert expected in " ".join(res.output.split())
    assert blocker.read_text() == "an operator's file\n"


def test_quant_set_by_default_takes_what_export_takes(trained_run, tmp_path):
    """Its fixed default of 256 refused every run with fewer training windows, where export's
    default takes them all."""
    from fusion_edge.export.pipeline import ExportConfig, calibration_set
    from fusion_edge.toolkit.checkpoint import read_run_info
    from fusion_edge.toolkit.dataset import Dataset

    out = tmp_path / "calib.npz"
    res = CliRunner().invoke(
        app, ["calibrate", "quant-set", str(trained_run.path), "--data", str(trained_run.data), "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    want = calibration_set(read_run_info(trained_run.path), Dataset.open(trained_run.data), ExportConfig())
    with np.load(out, allow_pickle=False) as z:
        assert next(z[k] for k in z.files if "imu" in k).shape[0] == len(want)


def test_quant_set_replaces_only_a_set_and_only_when_asked(trained_run, tmp_path):
    """An existing --out used to be replaced silently, whatever it was."""
    args = ["calibrate", "quant-set", str(trained_run.path), "--data", str(trained_run.data),
            "--windows", "16", "--out"]
    out = tmp_path / "calib.npz"
    assert CliRunner().invoke(app, [*args, str(out)]).exit_code == 0
    first = out.read_bytes()
    res = CliRunner().invoke(app, [*args, str(out)])
    assert res.exit_code == 2 and "already exists" in " ".join(res.output.split())
    assert out.read_bytes() == first
    res = CliRunner().invoke(app, [*args, str(out), "--overwrite", "--seed", "3"])
    assert res.exit_code == 0, res.output
    notes = tmp_path / "notes.npz"
    notes.write_bytes(b"an analyst's own file")
    res = CliRunner().invoke(app, [*args, str(notes), "--overwrite"])
    assert res.exit_code == 2 and "is not a calibration set" in " ".join(res.output.split())
    assert notes.read_bytes() == b"an analyst's own file"
