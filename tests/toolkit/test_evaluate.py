"""Evaluating a run: the JSON it writes, the plots, which windows are scored, and datasets that
do not fit the run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fusion_edge.errors import ConfigError, DatasetError
from fusion_edge.toolkit.checkpoint import read_run_info
from fusion_edge.toolkit.dataset import Dataset, DatasetSpec, TaskSpec, write_dataset
from fusion_edge.toolkit.evaluate import evaluate_run, select_windows

pytestmark = pytest.mark.usefixtures("torch_one_thread")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def evaluated(trained_run, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    out = tmp_path_factory.mktemp("eval")
    res = evaluate_run(
        trained_run.path,
        trained_run.data,
        json_path=out / "m" / "metrics.json",
        plots_dir=out / "plots",
    )
    return res, out / "m" / "metrics.json", out / "plots"


def test_json_has_the_documented_keys(evaluated) -> None:
    res, json_path, _ = evaluated
    doc = json.loads(json_path.read_text())
    assert doc == json.loads(json.dumps(res))  # what was returned is what was written
    assert set(doc["tasks"]) == {"action", "tactic", "quality"}
    for task, n_labels in (("action", 12), ("tactic", 8)):
        m = doc["tasks"][task]
        assert {"accuracy", "macro_f1", "per_class_recall", "confusion"} <= set(m)
        assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["macro_f1"] <= 1.0
        assert len(m["per_class_recall"]) == n_labels
        conf = np.asarray(m["confusion"])
        assert conf.shape == (n_labels, n_labels) and conf.sum() == doc["windows"]
    q = doc["tasks"]["quality"]
    assert {"mae", "relative_error"} <= set(q)
    assert "accuracy" not in q and 0.0 <= q["mae"] <= 1.0
    assert q["relative_error"] == pytest.approx(q["mae"])  # quality's range is [0, 1]
    assert doc["split"] == "test" and doc["windows"] > 0
    assert not list(json_path.parent.glob("*.tmp"))  # written atomically


def test_confusion_plots_are_valid_pngs(evaluated) -> None:
    import matplotlib.image

    _, _, plots = evaluated
    assert sorted(p.name for p in plots.iterdir()) == [
        "confusion_action.png",
        "confusion_tactic.png",
    ]
    for png in plots.iterdir():
        data = png.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width > 200 and height > 200
        assert matplotlib.image.imread(png).ndim == 3  # decodes


def test_auto_split_scores_only_the_runs_test_players(trained_run, evaluated) -> None:
    res, _, _ = evaluated
    info = read_run_info(trained_run.path)
    ds = Dataset.open(trained_run.data)
    idx, used = select_windows(info, ds, "auto")
    assert used == "test"
    assert set(ds.player[idx].astype(str)) == set(info.split.test)
    assert res["windows"] == idx.size == int(np.isin(ds.player, info.split.test).sum())


def test_auto_split_scores_everything_on_new_players(trained_run, tmp_path: Path) -> None:
    from fusion_edge.scenarios import get_scenario
    from fusion_edge.toolkit.scenario_dataset import simulate_dataset

    new = tmp_path / "new"
    summary = simulate_dataset([get_scenario("5v5")], new, seed=77, duration_s=15.0)
    res = evaluate_run(trained_run.path, new)
    assert res["split"] == "all" and res["windows"] == summary["windows"] > 0


@pytest.mark.parametrize("split", ["all", "train", "val", "test"])
def test_explicit_split(trained_run, split: str) -> None:
    info = read_run_info(trained_run.path)
    ds = Dataset.open(trained_run.data)
    idx, used = select_windows(info, ds, split)
    assert used == split
    expected = (
        len(ds) if split == "all" else int(np.isin(ds.player, getattr(info.split, split)).sum())
    )
    assert idx.size == expected


def test_unknown_split(trained_run) -> None:
    info = read_run_info(trained_run.path)
    with pytest.raises(ValueError, match="split must be auto, all, train, val or test, got 'dev'"):
        select_windows(info, Dataset.open(trained_run.data), "dev")


# ------------------------------------------------------------------ datasets that do not fit


def write_like(run_spec: DatasetSpec, root: Path, spec: DatasetSpec) -> Path:
    """A small random dataset of ``spec`` (three players)."""
    rng = np.random.default_rng(0)
    n = 9
    inputs = {m.name: rng.normal(size=(n, *m.shape)).astype(np.float32) for m in spec.modalities}
    targets = {
        t.name: (
            rng.integers(0, t.num_classes, n)
            if t.is_classification
            else rng.uniform(0, 1, n).astype(np.float32)
        )
        for t in spec.tasks
    }
    return write_dataset(root, spec, inputs, targets, [f"x{i % 3}" for i in range(n)], ["s"] * n)


def test_dataset_with_other_channels_names_the_modality(trained_run, tmp_path: Path) -> None:
    spec = read_run_info(trained_run.path).dataset
    imu = spec.modality("imu")
    other = replace(imu, channels=tuple(f"acc{i}" for i in range(len(imu.channels))))
    data = write_like(
        spec, tmp_path / "d", replace(spec, modalities=(other, spec.modality("position")))
    )
    with pytest.raises(
        DatasetError,
        match=r"modality 'imu' differs: the run expects channels \['ax', .*\] x 240 "
        r"samples, the dataset has \['acc0', .*\] x 240",
    ):
        evaluate_run(trained_run.path, data)


def test_dataset_without_a_modality(trained_run, tmp_path: Path) -> None:
    spec = read_run_info(trained_run.path).dataset
    data = write_like(spec, tmp_path / "d", replace(spec, modalities=(spec.modality("imu"),)))
    with pytest.raises(
        DatasetError,
        match=r"the run was trained with modality 'position', which .* lacks "
        r"\(it has \['imu'\]\); use a dataset made the same way",
    ):
        evaluate_run(trained_run.path, data)


def test_dataset_with_other_labels(trained_run, tmp_path: Path) -> None:
    spec = read_run_info(trained_run.path).dataset
    tactic = TaskSpec("tactic", "class", labels=tuple(f"t{i}" for i in range(8)))
    tasks = tuple(tactic if t.name == "tactic" else t for t in spec.tasks)
    data = write_like(spec, tmp_path / "d", replace(spec, tasks=tasks))
    with pytest.raises(
        DatasetError,
        match=r"task 'tactic' has labels \['t0', .*\] in the dataset but the run was "
        r"trained on \['ball_possession', ",
    ):
        evaluate_run(trained_run.path, data)


def test_dataset_without_a_task(trained_run, tmp_path: Path) -> None:
    spec = read_run_info(trained_run.path).dataset
    data = write_like(spec, tmp_path / "d", replace(spec, tasks=spec.tasks[:2]))
    with pytest.raises(
        DatasetError, match=r"the run predicts task 'quality', which the dataset does not label"
    ):
        evaluate_run(trained_run.path, data)


def test_missing_dataset(trained_run, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nope"):
        evaluate_run(trained_run.path, tmp_path / "nope")


# ------------------------------------------------- mistakes found in review (second analyst pass)


def test_dataset_with_other_units_or_rate_is_refused(trained_run, tmp_path: Path) -> None:
    # Same channel names and window length, but accelerations in g, or another sample rate
    # (48 Hz x 5 s = 240 samples, like the run's 40 Hz x 6 s): the numbers mean something else.
    spec = read_run_info(trained_run.path).dataset
    imu = spec.modality("imu")
    in_g = replace(imu, units=("g", "g", "g", *imu.units[3:]))
    data = write_like(spec, tmp_path / "g", replace(spec, modalities=(in_g, spec.modality("position"))))
    with pytest.raises(DatasetError, match=r"modality 'imu' differs: the run expects units \['m/s\^2'"):
        evaluate_run(trained_run.path, data)
    mods = tuple(replace(m, sample_rate_hz=m.sample_rate_hz * 1.2) for m in spec.modalities)
    data = write_like(spec, tmp_path / "r", replace(spec, modalities=mods, window_seconds=5.0, hop_seconds=2.5))
    with pytest.raises(DatasetError, match=r"modality 'imu' differs: the run expects 40 Hz, the dataset has 48 Hz"):
        evaluate_run(trained_run.path, data)


def test_dataset_with_another_task_kind_or_range_is_refused(trained_run, tmp_path: Path) -> None:
    spec = read_run_info(trained_run.path).dataset

    def with_quality(task: TaskSpec) -> DatasetSpec:
        return replace(spec, tasks=tuple(task if t.name == "quality" else t for t in spec.tasks))

    data = write_like(spec, tmp_path / "k", with_quality(TaskSpec("quality", "class", labels=("lo", "hi"))))
    with pytest.raises(
        DatasetError, match=r"task 'quality' is a class task in the dataset but the run predicts it as regression"
    ):
        evaluate_run(trained_run.path, data)
    data = write_like(spec, tmp_path / "p", with_quality(TaskSpec("quality", "regression", value_range=(0, 100))))
    with pytest.raises(
        DatasetError,
        match=r"task 'quality' has value range \[0.0, 100.0\] in the dataset but the run was trained on \[0.0, 1.0\]",
    ):
        evaluate_run(trained_run.path, data)


def test_a_task_without_labels_is_reported_as_such_not_as_zero(trained_run, tmp_path: Path) -> None:
    spec = read_run_info(trained_run.path).dataset
    root = write_like(spec, tmp_path / "src", spec)
    ds = Dataset.open(root)
    targets = dict(ds.targets)
    targets["action"] = np.full(len(ds), -1)
    targets["quality"] = np.full(len(ds), np.nan, dtype=np.float32)
    data = write_dataset(tmp_path / "d", spec, dict(ds.inputs), targets, ds.player, ds.session)
    plots = tmp_path / "plots"
    evaluate_run(trained_run.path, root, plots_dir=plots)  # all labelled: both plots
    res = evaluate_run(trained_run.path, data, json_path=tmp_path / "m.json", plots_dir=plots)
    # The earlier action plot would read as this evaluation's; it goes, tactic's is redrawn.
    assert sorted(p.name for p in plots.iterdir()) == ["confusion_tactic.png"]
    doc = json.loads((tmp_path / "m.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    for name in ("action", "quality"):
        m = doc["tasks"][name]
        assert m["support"] == 0 and res["tasks"][name]["support"] == 0
        assert all(m[k] is None for k in ("accuracy", "macro_f1", "mae", "relative_error") if k in m)
    assert doc["tasks"]["tactic"]["accuracy"] is not None


def _relabel(trained_run, tmp_path: Path, keep: set[str], rename: dict[str, str]) -> Path:
    ds = Dataset.open(trained_run.data)
    player = ds.player.astype(str)
    sel = np.isin(player, sorted(keep | set(rename)))
    new_player = np.array([rename.get(p, p) for p in player[sel]])
    return write_dataset(
        tmp_path / "d", ds.spec, {k: v[sel] for k, v in ds.inputs.items()},
        {k: v[sel] for k, v in ds.targets.items()}, new_player, ds.session[sel],
    )


def test_auto_split_keeps_new_players_beside_the_runs_test_players(trained_run, tmp_path: Path) -> None:
    # A dataset with one training player, the test players and one newcomer: auto used to
    # score the test players only, silently dropping the newcomer.
    info = read_run_info(trained_run.path)
    seen, other = info.split.train[0], info.split.train[1]
    data = _relabel(trained_run, tmp_path, {seen, *info.split.test}, {other: "newcomer"})
    ds = Dataset.open(data)
    idx, used = select_windows(info, ds, "auto")
    scored = set(ds.player[idx].astype(str))
    assert scored == {*info.split.test, "newcomer"} and used == "held-out"


def test_auto_split_with_only_seen_players_says_what_to_do(trained_run, tmp_path: Path) -> None:
    info = read_run_info(trained_run.path)
    data = _relabel(trained_run, tmp_path, {info.split.train[0], info.split.val[0]}, {})
    with pytest.raises(DatasetError, match=r"holds only players the run trained or validated on.*--split all"):
        evaluate_run(trained_run.path, data)


def test_seen_windows_are_counted(trained_run) -> None:
    res = evaluate_run(trained_run.path, trained_run.data, split="all")
    info = read_run_info(trained_run.path)
    ds = Dataset.open(trained_run.data)
    seen = int(np.isin(ds.player, [*info.split.train, *info.split.val]).sum())
    assert res["seen_windows"] == seen > 0
    assert evaluate_run(trained_run.path, trained_run.data)["seen_windows"] == 0


def test_json_over_a_file_that_is_not_an_evaluation_is_refused(trained_run, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run.path, run)
    before = (run / "config.json").read_bytes()
    with pytest.raises(ConfigError, match=r"config.json already exists and is not an evaluation's JSON"):
        evaluate_run(run, trained_run.data, json_path=run / "config.json")
    assert (run / "config.json").read_bytes() == before
    # A previous evaluation's JSON is replaced (re-evaluating after retraining is normal).
    evaluate_run(run, trained_run.data, json_path=run / "metrics.json")
    evaluate_run(run, trained_run.data, json_path=run / "metrics.json", split="all")
    assert json.loads((run / "metrics.json").read_text())["split"] == "all"
