"""The analyst commands driven through typer's CliRunner: scenarios, simulate, train, evaluate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fusion_edge import __version__
from fusion_edge.cli.app import app
from fusion_edge.cli.common import console

runner = CliRunner()


def invoke(*args: str):
    """Run the app with a wide terminal (no wrapping inside messages)."""
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def flat(text: str) -> str:
    """Whitespace-normalized output (rich may still wrap long messages)."""
    return " ".join(text.split())


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point user directories at tmp_path so no test reads or writes the real home."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home" / ".cache"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "home" / "mpl"))


@pytest.fixture(scope="module")
def workflow(tmp_path_factory: pytest.TempPathFactory, torch_one_thread: None) -> Iterator[dict]:
    """simulate -> train -> evaluate once through the CLI; tests check each step's result."""
    root = tmp_path_factory.mktemp("cli")
    data, run, metrics = root / "data", root / "run", root / "metrics.json"
    sim = invoke("simulate", "--scenario", "5v5", "--minutes", "1", "--seed", "1", "--out", data)
    trn = invoke("train", "--data", data, "--out", run, "--epochs", "1", "--device", "cpu")
    ev = invoke("evaluate", run, "--data", data, "--json", metrics, "--plots", root / "plots")
    yield {
        "root": root,
        "data": data,
        "run": run,
        "metrics": metrics,
        "sim": sim,
        "train": trn,
        "eval": ev,
    }


def test_version() -> None:
    res = invoke("--version")
    assert res.exit_code == 0
    assert res.output.strip() == f"fusion-edge {__version__}"


def test_no_arguments_shows_help() -> None:
    res = invoke()
    assert "Usage" in res.output and "simulate" in res.output


def test_help_of_every_command() -> None:
    group = typer.main.get_command(app)
    names = sorted(group.commands)  # type: ignore[attr-defined]
    assert {"scenarios", "simulate", "train", "evaluate", "ablation"} <= set(names)
    res = invoke("--help")
    assert res.exit_code == 0
    for name in names:
        assert name in res.output
        sub = invoke(name, "--help")
        assert sub.exit_code == 0, (name, sub.output)
        assert "Usage" in sub.output and "--help" in sub.output
        cmd = group.commands[name]  # type: ignore[attr-defined]
        if getattr(cmd, "commands", None):  # a command group: every subcommand too
            for sub_name in cmd.commands:
                assert invoke(name, sub_name, "--help").exit_code == 0, (name, sub_name)


def test_scenarios_lists_the_catalogue() -> None:
    res = invoke("scenarios")
    assert res.exit_code == 0
    for name in ("drill", "rondo", "5v5", "11v11", "basketball"):
        assert name in res.output
    assert "105 x 68" in res.output


def test_scenarios_actions() -> None:
    res = invoke("scenarios", "--actions")
    assert res.exit_code == 0
    out = flat(res.output)
    assert "take_off" in out and "assisting_defense" in out and "retreating_defense" in out


def test_scenarios_with_a_user_file(tmp_path: Path) -> None:
    f = tmp_path / "mine.toml"
    f.write_text(
        '[futsal]\nsport = "futsal"\nteams = 2\nplayers = 5\nduration_s = 60\n'
        "pitch_m = [40, 20]\nintensity = 0.9\n"
    )
    res = invoke("scenarios", "--scenario-file", f)
    assert res.exit_code == 0 and "futsal" in res.output
    f.write_text("[futsal]\nteams = 2\nspeed = 1\n")
    res = invoke("scenarios", "--scenario-file", f)
    assert res.exit_code == 2
    assert "unknown key(s) ['speed']" in flat(res.output)
    assert "Traceback" not in res.output


def test_simulate_writes_a_dataset(workflow: dict) -> None:
    res = workflow["sim"]
    assert res.exit_code == 0, res.output
    doc = json.loads((workflow["data"] / "dataset.json").read_text())
    assert [m["name"] for m in doc["modalities"]] == ["imu", "position"]
    assert [t["name"] for t in doc["tasks"]] == ["action", "tactic", "quality"]
    assert doc["source"]["seed"] == 1 and doc["source"]["duration_s"] == 60.0
    assert "from 10 players (1 session) to" in flat(res.output)


def test_train_writes_a_run(workflow: dict) -> None:
    res = workflow["train"]
    assert res.exit_code == 0, res.output
    assert (workflow["run"] / "model.safetensors").is_file()
    doc = json.loads((workflow["run"] / "config.json").read_text())
    assert len(doc["history"]) == 1 and doc["model"]["size"] == "edge"
    out = flat(res.output)
    assert "accuracy" in out and "relative error" in out and "run written to" in out


def test_evaluate_writes_metrics(workflow: dict) -> None:
    res = workflow["eval"]
    assert res.exit_code == 0, res.output
    doc = json.loads(workflow["metrics"].read_text())
    assert set(doc["tasks"]) == {"action", "tactic", "quality"}
    assert doc["split"] == "test"
    assert (workflow["root"] / "plots" / "confusion_action.png").is_file()
    out = flat(res.output)
    assert "Evaluation on" in out and "metrics written to" in out
    assert "confusion plots (action, tactic) in" in out


def test_evaluate_plots_of_a_regression_only_run_says_none_are_drawn(workflow: dict, tmp_path: Path) -> None:
    run = tmp_path / "q"
    res = invoke("train", "--data", workflow["data"], "--out", run, "--epochs", "1", "--task", "quality",
                 "--device", "cpu")
    assert res.exit_code == 0, res.output
    res = invoke("evaluate", run, "--data", workflow["data"], "--plots", tmp_path / "plots")
    assert res.exit_code == 0, res.output
    assert "note: no confusion plot drawn" in flat(res.output)
    assert not (tmp_path / "plots").exists() or not any((tmp_path / "plots").iterdir())


def test_simulate_refuses_to_overwrite(workflow: dict) -> None:
    res = invoke("simulate", "--scenario", "drill", "--minutes", "0.2", "--out", workflow["data"])
    assert res.exit_code == 2
    assert "Traceback" not in res.output and "error:" in res.output


def test_typo_in_scenario(tmp_path: Path) -> None:
    res = invoke("simulate", "--scenario", "5v55", "--out", tmp_path / "d")
    assert res.exit_code == 2
    out = flat(res.output)
    assert "unknown scenario '5v55'. Did you mean '5v5'?" in out
    assert "Traceback" not in res.output
    assert not (tmp_path / "d").exists()


def test_missing_dataset(tmp_path: Path) -> None:
    res = invoke(
        "train", "--data", tmp_path / "nowhere", "--out", tmp_path / "run", "--epochs", "1"
    )
    assert res.exit_code == 2
    out = flat(res.output)
    assert "error:" in out and "nowhere" in out
    assert "Traceback" not in res.output
    assert not (tmp_path / "run").exists()


def test_evaluate_missing_run(workflow: dict, tmp_path: Path) -> None:
    res = invoke("evaluate", tmp_path / "norun", "--data", workflow["data"])
    assert res.exit_code == 2
    assert "is not a training run" in flat(res.output) and "Traceback" not in res.output


def test_train_unknown_size(workflow: dict, tmp_path: Path) -> None:
    res = invoke("train", "--data", workflow["data"], "--out", tmp_path / "r", "--size", "huge")
    assert res.exit_code == 2
    assert "unknown size 'huge': choose edge or paper" in flat(res.output)


def test_simulate_unknown_window_layout(tmp_path: Path) -> None:
    res = invoke("simulate", "--out", tmp_path / "d", "--minutes", "0.5", "--windows", "sliding")
    assert res.exit_code == 2 and not (tmp_path / "d").exists()
    assert "unknown --windows 'sliding': choose cycle-end or any-phase" in flat(res.output)


def test_train_unknown_task_weighting(workflow: dict, tmp_path: Path) -> None:
    res = invoke("train", "--data", workflow["data"], "--out", tmp_path / "r", "--task-weighting", "learnt")
    assert res.exit_code == 2 and not (tmp_path / "r").exists()
    assert "unknown task weighting 'learnt': choose uncertainty or fixed" in flat(res.output)


def test_ablation_over_seeds_reports_mean_and_paired_steps(workflow: dict, tmp_path: Path) -> None:
    out = tmp_path / "ablation.json"
    res = invoke("ablation", "--data", workflow["data"], "--epochs", "1", "--seeds", "2", "--json", out)
    assert res.exit_code == 0, res.output
    assert "Ablation over 2 seeds" in res.output and "step +multitask" in res.output
    doc = json.loads(out.read_text())
    assert len(doc["runs"]) == 2 and doc["seeds"]["seeds"] == 2
    assert [r["name"] for r in doc["seeds"]["rows"]] == ["CNN only", "+LSTM", "+attention", "+multitask"]
    step = doc["seeds"]["steps"][0]["tasks"]["action"]
    runs = [{r["name"]: r["tasks"]["action"]["accuracy"] for r in run["rows"]} for run in doc["runs"]]
    assert step["values"] == pytest.approx([r["+LSTM"] - r["CNN only"] for r in runs])


# --- user mistakes found in review: a clear error (exit 2) and no traceback, nothing lost ---


def test_train_refuses_to_replace_an_existing_run(workflow: dict) -> None:
    run = workflow["run"]
    before = (run / "model.safetensors").read_bytes(), (run / "config.json").read_bytes()
    res = invoke("train", "--data", workflow["data"], "--out", run, "--epochs", "1", "--seed", "9")
    assert res.exit_code == 2, res.output
    out = flat(res.output)
    assert "already holds a training run" in out and "--overwrite" in out
    assert "epoch 1" not in out  # refused before training, not after
    assert ((run / "model.safetensors").read_bytes(), (run / "config.json").read_bytes()) == before


def test_train_overwrite_replaces_a_run(workflow: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ("train", "--data", workflow["data"], "--out", run, "--epochs", "1", "--device", "cpu")
    assert invoke(*args).exit_code == 0
    assert "came from the run" not in flat(invoke(*args, "--overwrite").output)  # nothing else there
    assert invoke("evaluate", run, "--data", workflow["data"], "--json", run / "metrics.json").exit_code == 0
    res = invoke(*args, "--seed", "3", "--overwrite")
    assert res.exit_code == 0, res.output
    assert json.loads((run / "config.json").read_text())["train"]["seed"] == 3
    # The old run's metrics stay (never deleted), and the analyst is told they are stale.
    assert (run / "metrics.json").is_file()
    out = flat(res.output)
    assert "metrics.json in" in out and "came from the run this one replaced" in out
    assert "re-run 'fusion-edge evaluate'" in out


def test_train_unwritable_out_is_refused_before_training(workflow: dict, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    res = invoke("train", "--data", workflow["data"], "--out", tmp_path / "afile" / "run", "--epochs", "1")
    assert res.exit_code == 2, res.output
    out = flat(res.output)
    assert "is a file, not a folder" in out and "epoch 1" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--epochs", "0"), "should be greater than or equal to 1"),
        (("--batch-size", "0"), "should be greater than or equal to 1"),
        (("--lr", "-1"), "--lr must be a positive learning rate, got -1"),
        (("--device", "gpu"), "unknown --device 'gpu': choose auto, cpu, cuda or cuda:N"),
        (("--task", "actoin"), "the dataset has no task 'actoin' (--task); its tasks are 'action'"),
        (("--task", "action", "--task", "tactik"), "the dataset has no task 'tactik'"),
    ],
)
def test_train_bad_options(workflow: dict, tmp_path: Path, args: tuple, message: str) -> None:
    res = invoke("train", "--data", workflow["data"], "--out", tmp_path / "r", "--epochs", "1", *args)
    assert res.exit_code == 2, res.output
    assert message in flat(res.output)
    assert not (tmp_path / "r").exists()


def test_evaluate_bad_split_and_unwritable_outputs(workflow: dict, tmp_path: Path) -> None:
    run, data = workflow["run"], workflow["data"]
    res = invoke("evaluate", run, "--data", data, "--split", "dev")
    assert res.exit_code == 2 and "unknown --split 'dev': choose auto, all, train, val, test" in flat(res.output)
    (tmp_path / "afile").write_text("x")
    for opt, target, message in [
        ("--json", tmp_path / "afile" / "m.json", "is a file, not a folder"),
        ("--json", tmp_path, "is a folder; give a file path"),
        ("--plots", tmp_path / "afile", "is a file, not a folder"),
    ]:
        res = invoke("evaluate", run, "--data", data, opt, target)
        assert res.exit_code == 2, res.output
        out = flat(res.output)
        assert message in out and "Evaluation on" not in out  # refused before the work
    assert (tmp_path / "afile").read_text() == "x"


def test_ablation_bad_size_and_unwritable_json(workflow: dict, tmp_path: Path) -> None:
    res = invoke("ablation", "--data", workflow["data"], "--epochs", "1", "--size", "huge")
    assert res.exit_code == 2 and "unknown size 'huge': choose edge or paper" in flat(res.output)
    (tmp_path / "afile").write_text("x")
    res = invoke("ablation", "--data", workflow["data"], "--epochs", "1", "--json", tmp_path / "afile" / "a.json")
    assert res.exit_code == 2, res.output
    assert "is a file, not a folder" in flat(res.output) and "CNN only" not in res.output


def test_simulate_too_short_or_unwritable(tmp_path: Path) -> None:
    res = invoke("simulate", "--minutes", "0", "--out", tmp_path / "d")
    assert res.exit_code == 2 and "--minutes 0 is too short" in flat(res.output)
    res = invoke("simulate", "--minutes", "1", "--sessions", "0", "--out", tmp_path / "d")
    assert res.exit_code == 2 and "should be greater than or equal to 1" in flat(res.output)
    (tmp_path / "afile").write_text("x")
    res = invoke("simulate", "--minutes", "1", "--out", tmp_path / "afile" / "d")
    assert res.exit_code == 2, res.output
    assert "is a file, not a folder" in flat(res.output)
    assert not (tmp_path / "d").exists()
    # Long enough for an action cycle, too short for a window: the advice is about simulating,
    # not about a user's recording.
    res = invoke("simulate", "--scenario", "5v5", "--minutes", "0.05", "--out", tmp_path / "d")
    assert res.exit_code == 2, res.output
    out = flat(res.output)
    assert "the simulated sessions (3 s) gave no 6 s windows" in out and "--minutes 1" in out
    assert "recording" not in out and not (tmp_path / "d").exists()


def test_scenario_file_error_names_the_scenario_on_the_terminal(tmp_path: Path) -> None:
    # rich used to read "[futsal]" in the message as markup and print "scenario  in ...".
    f = tmp_path / "mine.toml"
    f.write_text(
        '[futsal]\nteams = 2\nplayers = 5\nduration_s = 60\npitch_m = [40, 20]\nintensty = 0.9\n'
    )
    res = invoke("scenarios", "--scenario-file", f)
    assert res.exit_code == 2
    assert f"scenario [futsal] in {f}:6: unknown key(s) ['intensty']" in flat(res.output)
    f.write_text('[futsal]\nteams = 2\nplayers = 5\nduration_s = 60\npitch_m = 40\nintensity = 0.9\n')
    res = invoke("scenarios", "--scenario-file", f)
    assert res.exit_code == 2
    assert "'pitch_m' must be [length, width] in metres (5..200)" in flat(res.output)


# --- second review pass: evaluate and ablation mistakes ---


def test_evaluate_json_over_the_runs_config_is_refused(workflow: dict) -> None:
    run = workflow["run"]
    before = (run / "config.json").read_bytes()
    res = invoke("evaluate", run, "--data", workflow["data"], "--json", run / "config.json")
    assert res.exit_code == 2, res.output
    out = flat(res.output)
    assert "config.json already exists and is not an evaluation's JSON" in out
    assert "Evaluation on" not in out and (run / "config.json").read_bytes() == before


def test_evaluate_split_all_on_the_training_data_warns(workflow: dict) -> None:
    res = invoke("evaluate", workflow["run"], "--data", workflow["data"], "--split", "all")
    assert res.exit_code == 0, res.output
    out = flat(res.output)
    assert "windows are from players the run trained or validated on" in out and "optimistic" in out
    res = invoke("evaluate", workflow["run"], "--data", workflow["data"])
    assert "optimistic" not in flat(res.output)


def test_print_metrics_without_labels_and_with_tied_weakest_classes() -> None:
    from fusion_edge.cli.toolkit_commands import print_metrics

    res = {
        "windows": 9, "split": "all", "seen_windows": 0,
        "tasks": {
            "action": {"accuracy": None, "macro_f1": None, "support": 0,
                       "per_class_recall": {"a": None, "b": None}},
            "tactic": {"accuracy": 0.5, "macro_f1": 0.4, "support": 9,
                       "per_class_recall": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}},
            "quality": {"mae": None, "relative_error": None, "support": 0},
        },
    }
    with console.capture() as cap:
        print_metrics(res)
    out = flat(cap.get().replace("│", " "))
    assert "action no labelled windows - - 0" in out and "quality no labelled windows - 0" in out
    assert "tactic 0.500 0.400 x +2 more (0.00) 9" in out  # the labelled windows scored
    assert "x +2 more (0.00)" in out  # not just "x (0.00)", as if x alone were weakest


def test_print_metrics_names_no_weakest_class_when_every_class_is_perfect() -> None:
    from fusion_edge.cli.toolkit_commands import print_metrics

    res = {"windows": 4, "split": "test", "seen_windows": 0, "tasks": {"act": {
        "accuracy": 1.0, "macro_f1": 1.0, "support": 4, "per_class_recall": {"still": 1.0, "moving": 1.0}}}}
    with console.capture() as cap:
        print_metrics(res)
    out = flat(cap.get().replace("│", " "))
    assert "act 1.000 1.000 - 4" in out and "moving" not in out and "still" not in out


def _ablation(workflow: dict, *args: str):
    return invoke("ablation", "--data", workflow["data"], "--epochs", "1", *args)


def test_ablation_keeps_an_existing_json_unless_overwrite(workflow: dict, tmp_path: Path) -> None:
    out = tmp_path / "ablation.json"
    out.write_text('{"hours": "of work"}')
    res = _ablation(workflow, "--json", out)
    assert res.exit_code == 2, res.output
    assert "already exists" in flat(res.output) and "--overwrite" in flat(res.output)
    assert "CNN only" not in res.output and out.read_text() == '{"hours": "of work"}'
    res = _ablation(workflow, "--json", out, "--overwrite")
    assert res.exit_code == 0, res.output
    assert [r["name"] for r in json.loads(out.read_text())["rows"]][0] == "CNN only"


def test_ablation_interrupted_keeps_the_seeds_done(
    workflow: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fusion_edge.toolkit import ablation as ablation_mod

    real, calls = ablation_mod.run_ablation, []

    def stop_at_second(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(ablation_mod, "run_ablation", stop_at_second)
    out = tmp_path / "ablation.json"
    res = _ablation(workflow, "--seeds", "3", "--json", out)
    assert res.exit_code == 130, res.output
    o = flat(res.output)
    assert "interrupted" in o and "1 of 3 seeds" in o and str(out) in o
    doc = json.loads(out.read_text())
    assert len(doc["runs"]) == 1 and doc["complete"] is False and doc["rows"][0]["name"] == "CNN only"


def test_ablation_on_a_single_task_leaves_out_the_multitask_row(workflow: dict, tmp_path: Path) -> None:
    from dataclasses import replace

    from fusion_edge.toolkit.dataset import Dataset, write_dataset

    ds = Dataset.open(workflow["data"])
    spec = replace(ds.spec, tasks=(ds.spec.task("action"),))
    data = write_dataset(tmp_path / "one", spec, dict(ds.inputs), {"action": ds.targets["action"]},
                         ds.player, ds.session)
    out = tmp_path / "a.json"
    res = invoke("ablation", "--data", data, "--epochs", "1", "--json", out)
    assert res.exit_code == 0, res.output
    assert "+multitask row needs two or more tasks" in flat(res.output)
    assert [r["name"] for r in json.loads(out.read_text())["rows"]] == ["CNN only", "+LSTM", "+attention"]


def test_ablation_with_no_held_out_quality_label_says_so_instead_of_a_score(
    workflow: dict, tmp_path: Path
) -> None:
    """Quality rated for the training players only: the table used to read nan% / 0.0%."""
    import numpy as np

    from fusion_edge.toolkit.dataset import Dataset, write_dataset
    from fusion_edge.toolkit.splits import split_by_player

    ds = Dataset.open(workflow["data"])
    split = split_by_player(ds.player, seed=0)
    targets = dict(ds.targets)
    rated = np.isin(ds.player.astype(str), np.asarray(split.train))
    targets["quality"] = np.where(rated, targets["quality"], np.nan).astype(np.float32)
    data = write_dataset(tmp_path / "d", ds.spec, dict(ds.inputs), targets, ds.player, ds.session)
    out = tmp_path / "a.json"
    res = invoke("ablation", "--data", data, "--epochs", "1", "--json", out)
    assert res.exit_code == 0, res.output
    text = flat(res.output)
    assert "no held-out window of this split carries a label of quality" in text
    assert "no labels" in text and "nan" not in text
    doc = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert all(r["tasks"]["quality"]["relative_error"] is None for r in doc["rows"])
    assert all(r["tasks"]["action"]["accuracy"] is not None for r in doc["rows"])
