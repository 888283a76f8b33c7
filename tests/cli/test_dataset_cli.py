"""`fusion-edge dataset import|info`: a user's CSV recording from the command line."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fusion_edge.cli.app import app
from fusion_edge.toolkit.csv_import import import_csv
from fusion_edge.toolkit.dataset import Dataset

runner = CliRunner()


def flat(text: str) -> str:
    return " ".join(text.split())


def belt_csv(path: Path, seconds: int = 60) -> Path:
    """A 52 Hz belt logged in ms: heart rate, accelerometer, a phase label and an RPE score."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["time_ms", "hr", "acc_x", "acc_y", "acc_z", "phase", "rpe"])
        for i in range(52 * seconds):
            phase = "warmup" if i < 52 * 20 else "drill" if i < 52 * 45 else "rest"
            out.writerow([round(i * 1000 / 52), f"{90 + i * 0.01:.2f}", f"{math.sin(i / 5):.4f}",
                          f"{math.cos(i / 7):.4f}", "9.81", phase, 3 + i // 520])
    return path


OPTIONS = {
    "--channels": "hr,acc_x,acc_y,acc_z", "--units": "bpm,m/s^2,m/s^2,m/s^2", "--time-column": "time_ms",
    "--time-unit": "ms", "--window": "4", "--hop": "2", "--label": "phase",
    "--label-names": "phase=warmup,drill,rest", "--regression": "effort=rpe:0:10", "--player": "amira",
    "--modality": "belt",
}


def args(**changed: str | None) -> list[str]:
    """The options above, with ``changed`` ones replaced (``label_names="..."`` for --label-names;
    None leaves the option out)."""
    opts = {**OPTIONS, **{"--" + k.replace("_", "-"): v for k, v in changed.items()}}
    return [x for k, v in opts.items() if v is not None for x in (k, v)]


ARGS = args()


def test_import_writes_what_import_csv_writes_and_says_what_to_run_next(tmp_path: Path) -> None:
    src = belt_csv(tmp_path / "belt.csv")
    res = runner.invoke(app, ["dataset", "import", str(src), "--out", str(tmp_path / "cli"), *ARGS])
    assert res.exit_code == 0, res.output
    text = flat(res.output)
    assert "wrote 29 windows of 4 s (208 samples at 52 Hz) from 1 player(s)" in text
    assert "warmup 10, drill 12, rest 7" in text
    # The window at 18-22 s is 2 s warmup, 2 s drill: it goes to 'warmup', listed first.
    assert "note: 1 window(s) of task 'phase' were a tie between labels and went to the label listed first" in text
    # One player: `train` would refuse the dataset (its split is by player), so it is not suggested.
    assert "fusion-edge train --data" not in text
    assert ("next: training needs at least 3 players (train, validation and test are split by player); "
            "this dataset has 1. Import a CSV that holds more players") in text and "(--player-column)" in text
    import_csv(src, tmp_path / "api", channels=["hr", "acc_x", "acc_y", "acc_z"],
               units=["bpm", "m/s^2", "m/s^2", "m/s^2"], time_column="time_ms", time_unit="ms",
               window_seconds=4.0, hop_seconds=2.0, label_columns={"phase": "phase", "effort": "rpe"},
               label_names={"phase": ["warmup", "drill", "rest"]}, regression={"effort": (0.0, 10.0)},
               player="amira", modality_name="belt")
    a, b = Dataset.open(tmp_path / "cli"), Dataset.open(tmp_path / "api")
    assert a.spec.modalities == b.spec.modalities and a.spec.tasks == b.spec.tasks
    np.testing.assert_array_equal(a.inputs["belt"], b.inputs["belt"])
    for task in ("phase", "effort"):
        np.testing.assert_array_equal(a.targets[task], b.targets[task])


def test_info_prints_the_streams_and_labels_and_json(tmp_path: Path) -> None:
    src = belt_csv(tmp_path / "belt.csv")
    assert runner.invoke(app, ["dataset", "import", str(src), "--out", str(tmp_path / "ds"), *ARGS]).exit_code == 0
    res = runner.invoke(app, ["dataset", "info", str(tmp_path / "ds")])
    assert res.exit_code == 0, res.output
    text = flat(res.output)
    assert "29 windows of 4 s every 2 s; 1 player(s), 1 session(s)" in text
    assert "hr, acc_x, acc_y, acc_z" in text and "29 values, 3 to 8" in text
    res = runner.invoke(app, ["dataset", "info", str(tmp_path / "ds"), "--json"])
    assert json.loads(res.output)["tasks"]["phase"]["counts"] == {"warmup": 10, "drill": 12, "rest": 7}


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ({"regression": "effort=rpe:0"}, "give TASK[=COLUMN][:LOW:HIGH]"),
        ({"regression": "effort=rpe:ten:0"}, "LOW and HIGH must be numbers"),
        ({"regression": "effort=rpe:10:0"}, "LOW (10) must be below HIGH (0)"),
        ({"regression": "phase:0:10"}, "task 'phase' is given twice"),
        ({"units": "bpm,g"}, "--units gives 2 unit(s) for 4 channel(s)"),
        ({"label_names": "phase"}, "give TASK=NAME,NAME,..."),
        ({"label_names": "phase=warmup,drill,warmup"}, "a label is listed twice"),
        ({"channels": " , "}, "--channels names no column"),
        ({"channels": "hr,acc_q", "units": "bpm,g"}, "no column(s) ['acc_q']"),
        ({"window": "nan"}, "window_seconds (--window) must be a positive number of seconds, got nan"),
        ({"window": "0"}, "window_seconds (--window) must be a positive number of seconds, got 0.0"),
        ({"hop": "-1"}, "hop_seconds (--hop) must be a positive number of seconds, got -1.0"),
        ({"min_labeled": "2"}, "min_labeled_fraction (--min-labeled) must be in (0, 1], got 2.0"),
        ({"time_column": None, "rate": "52"}, "no --time-column was given"),
        ({"label_names": "effort=low,high"}, "task 'effort' is given label names"),
        ({"regression": "effort=rpe:0:2.5"}, "belt.csv:2: '3' in column 'rpe' is outside the range 0 to "
         "2.5 given for task 'effort' (520 value(s) outside; the column spans 3 to 3). Give the scale's range "
         "(--regression effort=rpe:LOW:HIGH; from Python, regression={'effort': (LOW, HIGH)}) or fix the cells"),
    ],
)
def test_import_mistakes_get_a_clear_error_and_write_nothing(tmp_path: Path, changed: dict, message: str) -> None:
    src = belt_csv(tmp_path / "belt.csv", seconds=10)
    res = runner.invoke(app, ["dataset", "import", str(src), "--out", str(tmp_path / "ds"), *args(**changed)])
    assert res.exit_code == 2, res.output
    assert message in flat(res.output)
    assert not (tmp_path / "ds").exists()


def test_import_refuses_an_out_that_is_a_file_before_reading_the_csv(tmp_path: Path) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me\n")
    res = runner.invoke(app, ["dataset", "import", str(tmp_path / "missing.csv"), "--out", str(blocker), *ARGS])
    assert res.exit_code == 2 and "is a file, not a folder" in flat(res.output)
    assert blocker.read_text() == "keep me\n"


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        # A file logged in ms read as seconds: 0.052 Hz, a 4 s window is 0.2 samples.
        ({"time_unit": "s"}, "a 4 s window is 0.2 samples at 0.05 Hz (inferred from column 'time_ms' read in s). "
                             "Check --time-unit"),
        # Read as microseconds: 52000 Hz, the 10 s recording is far shorter than one window.
        ({"time_unit": "us"}, "Hz (inferred from column 'time_ms' read in us): the longest stretch without a "
                              "time gap is 520 samples (0.01 s)"),
        ({"window": "30"}, "no complete window of 30 s (1560 samples) at 52 Hz (inferred from column 'time_ms' "
                           "read in ms): the longest stretch without a time gap is 520 samples (10 s)"),
        ({"channels": "hr,acc_x,acc_y,acc_zz"}, "Did you mean 'acc_z' for 'acc_zz'? Fix the names given as channels "
                                                "(--channels)"),
        ({"label": "phse", "label_names": "phse=warmup,drill,rest"}, "Fix the names given as task 'phse' (--label)"),
        ({"label_names": "phsae=warmup,drill"}, "task 'phsae' has no column: give it with --label (label_columns)"),
    ],
)
def test_a_wrong_time_unit_window_or_column_name_says_what_to_change(tmp_path: Path, changed: dict,
                                                                      message: str) -> None:
    src = belt_csv(tmp_path / "belt.csv", seconds=10)
    res = runner.invoke(app, ["dataset", "import", str(src), "--out", str(tmp_path / "ds"), *args(**changed)])
    assert res.exit_code == 2, res.output
    assert message in flat(res.output)
    assert not (tmp_path / "ds").exists()


def test_a_numeric_column_given_as_a_class_task_is_refused(tmp_path: Path) -> None:
    """--label rpe used to make one class per distinct RPE value ('3', '4', ...) without a word."""
    src = belt_csv(tmp_path / "belt.csv", seconds=30)
    changed = {"label": "effort=rpe", "label_names": "phase=warmup,drill,rest", "regression": "speed=hr"}
    opts = [x for x in args(**changed) if x != "--label-names" and not x.startswith("phase=")]
    res = runner.invoke(app, ["dataset", "import", str(src), "--out", str(tmp_path / "ds"), *opts])
    assert res.exit_code == 2, res.output
    text = flat(res.output)
    assert "column 'rpe' of class task 'effort' holds only numbers (3, 4, 5)" in text
    assert "--regression effort=rpe:LOW:HIGH" in text and "--label-names effort=3,4,5" in text
    assert "regression=)" not in text and "label_names=)" not in text  # no dangling Python keyword
    assert not (tmp_path / "ds").exists()
    # Listed as class names, the numbers are classes.
    res = runner.invoke(app, ["dataset", "import", str(src), "--out", str(tmp_path / "ds"), *opts,
                              "--label-names", "effort=3,4,5"])
    assert res.exit_code == 0, res.output
    assert Dataset.open(tmp_path / "ds").spec.task("effort").labels == ("3", "4", "5")


def test_no_task_dataset_passed_to_train_says_how_to_add_one(tmp_path: Path) -> None:
    src = tmp_path / "squad.csv"
    with src.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["player", "t", "ax"])
        for p in ("a", "b", "c"):
            out.writerows([p, f"{i / 10:.1f}", f"{math.sin(i):.3f}"] for i in range(60))
    res = runner.invoke(app, ["dataset", "import", str(src), "--out", str(tmp_path / "ds"), "--channels", "ax",
                              "--time-column", "t", "--window", "2", "--hop", "1", "--player-column", "player"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "run"),
                              "--epochs", "1", "--device", "cpu"])
    assert res.exit_code == 2, res.output
    text = flat(res.output)
    assert "the dataset has no task to train" in text and "--label TASK" in text
    assert "dataset.json" not in text  # adding a task there without its targets cannot work


def test_a_window_that_is_not_whole_samples_is_recorded_as_cut_and_said(tmp_path: Path) -> None:
    """1.3 s at 52 Hz is 67.6 samples; 68 are cut, and dataset.json used to say 1.3 s anyway."""
    src = belt_csv(tmp_path / "belt.csv")
    res = runner.invoke(app, ["dataset", "import", str(src), "--out", str(tmp_path / "d"),
                              *args(window="1.3", hop="0.5")])
    assert res.exit_code == 0, res.output
    text = flat(res.output)
    assert f"windows of {68 / 52:g} s (68 samples at 52 Hz)" in text
    assert f"note: --window 1.3 s is 67.6 samples at 52 Hz; whole samples give {68 / 52:g} s" in text
    assert "--hop" not in text  # 0.5 s is 26 samples exactly
    spec = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert spec["window_seconds"] == pytest.approx(68 / 52) and spec["hop_seconds"] == pytest.approx(0.5)
    assert Dataset.open(tmp_path / "d").inputs["belt"].shape[-1] == 68


def test_training_a_regression_imported_without_a_range_says_what_range_it_used(tmp_path: Path) -> None:
    """Session RPE on its 0-10 scale, imported with no range: the head used to stay in [0, 1]."""
    src = tmp_path / "squad.csv"
    with src.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["player", "t", "ax", "ay", "rpe"])
        for p in range(6):
            for i in range(20 * 40):
                rpe = 3 + 0.9 * p  # 3 to 7.5
                out.writerow([f"p{p}", f"{i / 20:.2f}", f"{math.sin(i / 3) * rpe:.4f}", "0.1", rpe])
    data, run = tmp_path / "d", tmp_path / "r"
    res = runner.invoke(app, ["dataset", "import", str(src), "--out", str(data), "--channels", "ax,ay",
                              "--time-column", "t", "--window", "2", "--hop", "1", "--player-column",
                              "player", "--regression", "effort=rpe"])
    assert res.exit_code == 0, res.output
    assert f"next: fusion-edge train --data {data} --out runs/d" in flat(res.output)  # six players
    assert json.loads((data / "dataset.json").read_text())["tasks"][0]["value_range"] is None
    res = runner.invoke(app, ["train", "--data", str(data), "--out", str(run), "--epochs", "1",
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    text = flat(res.output)
    assert "note: task 'effort' has no value range in dataset.json, so its head covers" in text
    lo, hi = json.loads((run / "config.json").read_text())["model"]["value_ranges"][0]
    assert f"covers {lo:.4g} to {hi:.4g}" in text and 3.0 < hi - lo and "nan" not in text


def test_an_import_without_a_task_does_not_suggest_training(tmp_path: Path) -> None:
    src = belt_csv(tmp_path / "belt.csv", seconds=10)
    res = runner.invoke(app, ["dataset", "import", str(src), "--out", str(tmp_path / "ds"),
                              *args(label=None, label_names=None, regression=None)])
    assert res.exit_code == 0, res.output
    text = flat(res.output)
    assert "no task: the dataset has windows only" in text and "next: fusion-edge train" not in text


def test_a_label_typo_is_refused_until_the_labels_are_listed(tmp_path: Path) -> None:
    """Without --label-names, 'dril' on one row became a class in no window."""
    src = belt_csv(tmp_path / "belt.csv", seconds=30)
    lines = src.read_text().splitlines(keepends=True)
    lines[1500] = lines[1500].replace(",drill,", ",dril,")  # file line 1501
    lines[100] = lines[100].replace(",warmup,", ",pause,")  # a rare label like no other
    src.write_text("".join(lines))
    opts = args(label_names=None)
    res = runner.invoke(app, ["dataset", "import", str(src), "--out", str(tmp_path / "a"), *opts])
    assert res.exit_code == 2, res.output
    text = flat(res.output)
    assert "belt.csv:1501: label 'dril' in column 'phase' looks like a typo of 'drill'" in text
    assert "(--label-names phase=dril,drill,pause,warmup" in text
    assert not (tmp_path / "a").exists()
    res = runner.invoke(app, ["dataset", "import", str(src), "--out", str(tmp_path / "b"), *opts,
                              "--label-names", "phase=warmup,drill,dril,pause"])
    assert res.exit_code == 0, res.output
    assert "dril 0" in flat(res.output) and "warning" not in res.output  # listed: accepted as they are
    lines[1500] = lines[1500].replace(",dril,", ",drill,")
    src.write_text("".join(lines))
    res = runner.invoke(app, ["dataset", "import", str(src), "--out", str(tmp_path / "c"), *opts])
    assert res.exit_code == 0, res.output
    assert ("warning: label 'pause' of task 'phase' (1 row(s) in column 'phase', first at "
            f"{src}:101) is the label of no 4 s window") in flat(res.output)


def test_a_nan_cell_is_named_by_line_and_column_not_called_empty(tmp_path: Path) -> None:
    src = belt_csv(tmp_path / "belt.csv", seconds=30)
    lines = src.read_text().splitlines(keepends=True)
    cells = lines[300].split(",")
    cells[3] = "NaN"  # file line 301, column 'acc_y'
    lines[300] = ",".join(cells)
    src.write_text("".join(lines))
    res = runner.invoke(app, ["dataset", "import", str(src), "--out", str(tmp_path / "ds"), *ARGS])
    assert res.exit_code == 0, res.output
    text = flat(res.output)
    assert (f"2 window(s) with a missing sample were left out (first: {src}:301, column 'acc_y' holds "
            "'NaN'); fill or interpolate the cells to keep them") in text
    assert "empty" not in text and "time gap" not in text
