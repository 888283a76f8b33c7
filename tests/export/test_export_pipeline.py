"""export(): the bundle, its report, the CLI, and refusal of bad input without leftovers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import typer
from typer.testing import CliRunner

from fusion_edge.errors import (
    BundleError,
    CalibrationError,
    CheckpointError,
    ConfigError,
    DatasetError,
)
from fusion_edge.export.pipeline import ExportConfig, export
from fusion_edge.runtime.bundle import verify_bundle

FAST = ExportConfig(precisions=("fp32",), calibration_windows=32, latency_runs=1, squad_size=3)


def test_bundle_is_complete_and_verifies(tiny_bundle) -> None:
    manifest = verify_bundle(tiny_bundle.bundle)
    names = [v["name"] for v in manifest["variants"]]
    assert names == ["fp32", "fp16", "int8_cpu", "int8_qdq_tensorrt", "pytorch_fp32"]
    assert manifest["fallback"]["torch_variant"] == "pytorch_fp32"  # the full model for torch-cuda
    trt = manifest["variants"][3]
    assert trt["kept_float"][0] == "LSTM" and trt["selection"][0]["kept_float"] == []
    assert trt["status"] == ("ok" if trt["selection"][-1]["within_budget"] else "over budget")
    assert manifest["fallback"] == {
        **manifest["fallback"],
        "variant": "fp32",
        "file": "model_fp32.onnx",
        "escalation_threshold": 0.6,
    }
    assert manifest["inputs"][0]["name"] == "imu" and manifest["inputs"][0]["window_samples"] == 40
    assert manifest["preprocessing"] == {"imu": {"resample_hz": 20.0}}
    assert len(manifest["normalization"]["imu"]["mean"]) == 6
    assert manifest["tasks"][0]["labels"] == ["walk", "run", "jump"]
    assert manifest["export_config"]["squad_size"] == 5
    for v in manifest["variants"]:
        assert set(v["latency_ms"]) == {"batch_1", "batch_5"}
        assert {"accuracy", "macro_f1", "per_class_recall", "confusion"} <= set(
            v["metrics"]["action"]
        )
        assert {"mae", "relative_error"} <= set(v["metrics"]["quality"])
    int8 = manifest["variants"][2]
    assert int8["size_bytes"] < manifest["variants"][0]["size_bytes"] / 3.0
    assert int8["calibration"]["windows"] == 48
    assert int8["int8_format"] == "qoperator"
    assert not [p for p in tiny_bundle.bundle.parent.iterdir() if ".tmp-" in p.name]
    # Float variants run the encoders as 2-D convolutions; the INT8 CPU one keeps them 1-D
    # (each layout is the faster one for its onnxruntime kernels), and nothing else is left.
    assert sorted(p.name for p in tiny_bundle.bundle.glob("*.onnx")) == sorted(
        v["file"] for v in manifest["variants"] if v["format"] == "onnx"
    )

    def conv_ranks(name: str) -> set[int]:
        proto = onnx.load(str(tiny_bundle.bundle / name))
        inits = {i.name: len(i.dims) for i in proto.graph.initializer}
        return {inits[n.input[3 if n.op_type == "QLinearConv" else 1]] for n in proto.graph.node
                if n.op_type in ("Conv", "QLinearConv")}

    assert conv_ranks("model_fp32.onnx") == {4}
    assert conv_ranks("model_int8_cpu.onnx") == {3}


def test_bundle_and_run_files_get_ordinary_permissions(tiny_bundle, tiny_run: Path) -> None:
    """safetensors writes 0600: a bundle copied to the box as another user lost its full model."""
    import stat

    from fusion_edge.file_access import ordinary_mode

    files = [p for p in [*tiny_bundle.bundle.iterdir(), *tiny_run.iterdir()] if p.is_file()]
    assert any(p.name == "model.safetensors" for p in files)
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(ordinary_mode())}, modes


def test_report_files_hold_the_table(tiny_bundle) -> None:
    report = json.loads((tiny_bundle.bundle / "report.json").read_text())
    variants = [r["variant"] for r in report["rows"]]
    assert variants[:2] == ["pytorch", "fp32"]
    fp16 = next(r for r in report["rows"] if r["variant"] == "fp16")
    assert set(fp16["delta_fp32"]) == {"action", "quality"}
    assert "speedup_vs_torch" in fp16 and "speedup_vs_fp32_ort" in fp16
    # Speedups at batch 1 (what the targets name) as well as at the squad size.
    fp32 = next(r for r in report["rows"] if r["variant"] == "fp32")
    torch_row = report["rows"][0]
    for batch in ("batch_1", "batch_5"):
        want = torch_row["latency_ms"][batch] / fp32["latency_ms"][batch]
        assert fp32["speedups"][batch]["vs_torch"] == pytest.approx(want)
        assert fp32["speedups"][batch]["vs_fp32_ort"] == pytest.approx(1.0)
    assert fp32["speedups"]["batch_5"]["vs_torch"] == pytest.approx(fp32["speedup_vs_torch"])
    md = (tiny_bundle.bundle / "report.md").read_text()
    assert "| int8_cpu |" in md and "ms @5" in md and "x vs trained torch @1 / @5" in md
    cell = f"{fp32['speedups']['batch_1']['vs_torch']:.3g} / {fp32['speedups']['batch_5']['vs_torch']:.3g}"
    assert f"| {cell} |" in next(line for line in md.splitlines() if line.startswith("| fp32 |"))
    # Heads in % under a header that says which figure, deltas in points, in the heads' order
    # (the table used to print 0.21 for a 21% relative error, and deltas in another order).
    assert "| action accuracy | quality rel. error |" in md
    assert "| delta step (points: action / quality err) | delta total (points: action / quality err) |" in md
    line = next(line for line in md.splitlines() if line.startswith("| fp16 |"))
    h, d = fp16["headline"], fp16["delta_total"]
    assert f"| {100 * h['action']:.1f}% | {100 * h['quality']:.1f}% |" in line
    assert f"| {100 * d['action']:+.2f} / {100 * d['quality']:+.2f} |" in line
    # Each variant's step is against what it was made from: every quantization against FP32.
    for r in report["rows"][2:]:
        if "headline" in r:
            assert r["derived_from"] == "fp32"
            assert r["delta_step"] == pytest.approx(r["delta_fp32"])
    assert "accuracy on" in report["notes"][0] and "median of 2 calls" in report["notes"][0]


def test_the_printed_table_has_report_md_columns_and_notes_keep_their_brackets(tiny_bundle) -> None:
    from types import SimpleNamespace

    from fusion_edge.cli.common import console
    from fusion_edge.cli.export_commands import export_table, print_export_result
    from fusion_edge.export.bundle import report_table

    rows = json.loads((tiny_bundle.bundle / "report.json").read_text())["rows"]
    cols, cells = report_table(rows, 5)
    table = export_table(rows, 5)
    # Every column, the per-step cost ("delta step") included: what each compression step lost.
    headers = [c.header for c in table.columns]
    assert len(headers) == len(cols) and "delta step (points: action / quality err)" in cols
    assert headers[3:5] == ["action\nacc. %", "quality\nerr. %"] and "delta step\n(points)" in headers
    assert table.caption == "deltas in points, per head: action / quality err"
    result = SimpleNamespace(rows=rows, bundle=tiny_bundle.bundle,
                             notes=["engines skipped: pip install 'fusion-edge[gpu]' on the GPU box"])
    with console.capture() as cap:
        print_export_result(result, 5)
    out = cap.get()
    assert cells[1][3] in out  # fp32's action accuracy, as report.md has it
    assert "pip install 'fusion-edge[gpu]'" in out  # rich took [gpu] for markup and dropped it


def test_export_config_round_trips_and_refuses_unknown_precision() -> None:
    cfg = ExportConfig(prune_ratio=0.25, precisions=("int8",), formats=("engine",))
    assert cfg.precisions == ("fp32", "int8") and cfg.formats == ("onnx", "engine")
    assert ExportConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    with pytest.raises(ConfigError, match="unknown precision 'int4'"):
        ExportConfig(precisions=("fp32", "int4"))
    assert ExportConfig(int8_format="QDQ").int8_format == "qdq"
    with pytest.raises(ConfigError, match="unknown INT8 format 'qlinear'.*qoperator, qdq"):
        ExportConfig(int8_format="qlinear")
    with pytest.raises(ConfigError, match="either --prune .* or a budget"):
        ExportConfig(prune_ratio=0.5, prune_params=40_000)
    with pytest.raises(ConfigError, match="--prune-round-to must be 1 or more, got 0"):
        ExportConfig(prune_ratio=0.5, prune_round_to=0)
    assert ExportConfig().int8_keep_float == ("attention",)
    assert ExportConfig(int8_keep_float=["heads", "lstm"]).int8_keep_float == ("heads", "lstm")
    with pytest.raises(ConfigError, match=r"unknown INT8 group\(s\) \['atention'\].*attention, heads"):
        ExportConfig(int8_keep_float=("atention",))
    assert ExportConfig().latency_threads == 1  # as the box's runtime runs
    with pytest.raises(ConfigError, match=r"latency threads must be >= 0 \(0: the libraries' defaults\), got -1"):
        ExportConfig(latency_threads=-1)


def test_latency_runs_on_the_threads_asked_for(tiny_run: Path, tmp_path: Path, monkeypatch) -> None:
    import onnxruntime as ort
    import torch

    from fusion_edge.export import measure
    from fusion_edge.toolkit.checkpoint import load_run

    seen = []
    real = ort.InferenceSession

    def spy(path, opts=None, **kw):
        seen.append(opts.intra_op_num_threads if opts is not None else None)
        return real(path, opts, **kw)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    model, info = load_run(tiny_run)
    src = tmp_path / "m.onnx"
    from fusion_edge.export.onnx_export import export_onnx

    export_onnx(model, src)
    xs = [np.zeros((2, c, n), np.float32) for _, c, n in info.model.modalities]
    assert set(measure.onnx_latency(src, xs, [1, 2], runs=1, threads=1)) == {"batch_1", "batch_2"}
    measure.onnx_latency(src, xs, [1], runs=1, threads=0)
    assert seen == [1, 0]
    before = torch.get_num_threads()
    during = []
    measure.interleaved_latency([lambda b: lambda: during.append(torch.get_num_threads())], [1],
                                runs=1, warmup=0, threads=1)
    assert during == [1] and torch.get_num_threads() == before


def test_latencies_are_taken_in_interleaved_rounds() -> None:
    """Each variant used to be timed alone, one after the other: a machine that slowed down
    half-way made the later variants look slower. Now every round calls each variant once."""
    from fusion_edge.export import measure

    calls: list[tuple[str, int]] = []

    def caller(name: str):
        return lambda b: lambda: calls.append((name, b))

    lat = measure.interleaved_latency([caller("a"), caller("b")], [1, 4], runs=3, warmup=1)
    assert [set(d) for d in lat] == [{"batch_1", "batch_4"}] * 2
    timed = calls[2:8]  # after one warm-up call each, batch 1
    assert timed == [("a", 1), ("b", 1)] * 3


def test_dataset_that_does_not_match_is_refused(
    tiny_run: Path, tmp_path: Path, dataset_factory
) -> None:
    other = dataset_factory(tmp_path / "other", imu_channels=4)
    with pytest.raises(DatasetError, match="modality 'imu' differs"):
        export(tiny_run, other, tmp_path / "b", FAST)
    wrong_labels = dataset_factory(tmp_path / "labels", labels=("a", "b", "c"))
    with pytest.raises(DatasetError, match="task 'action' has labels"):
        export(tiny_run, wrong_labels, tmp_path / "b", FAST)
    assert not (tmp_path / "b").exists()


def test_checkpoint_from_another_version_is_refused(
    tiny_run: Path, tiny_data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for f in tiny_run.iterdir():
        (run / f.name).write_bytes(f.read_bytes())
    doc = json.loads((run / "config.json").read_text())
    doc["version"] = 99
    (run / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="version 99"):
        export(run, tiny_data, tmp_path / "b", FAST)
    assert not (tmp_path / "b").exists()


def test_too_small_calibration_set_is_refused(
    tiny_run: Path, tiny_data: Path, tmp_path: Path
) -> None:
    cfg = ExportConfig(precisions=("int8",), calibration_windows=4, latency_runs=1)
    with pytest.raises(CalibrationError, match="too few"):
        export(tiny_run, tiny_data, tmp_path / "b", cfg)
    cfg = ExportConfig(precisions=("int8",), calibration_windows=100000, latency_runs=1)
    with pytest.raises(CalibrationError, match="only"):
        export(tiny_run, tiny_data, tmp_path / "b", cfg)
    assert not (tmp_path / "b").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_unwritable_output_is_refused(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(BundleError, match="writable"):
        export(tiny_run, tiny_data, locked / "b", FAST)


def test_output_under_a_file_is_refused(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BundleError, match="writable"):
        export(tiny_run, tiny_data, blocker / "b", FAST)


def test_failure_mid_export_leaves_nothing(
    tiny_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch
) -> None:
    import fusion_edge.export.pipeline as pipeline

    def boom(*a, **k):
        raise BundleError("simulated failure")

    monkeypatch.setattr(pipeline, "convert_fp16", boom)
    cfg = ExportConfig(precisions=("fp32", "fp16"), latency_runs=1, squad_size=3)
    with pytest.raises(BundleError, match="simulated"):
        export(tiny_run, tiny_data, tmp_path / "b", cfg)
    assert list(tmp_path.iterdir()) == []


def test_existing_bundle_needs_overwrite(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    export(tiny_run, tiny_data, out, FAST)
    with pytest.raises(BundleError, match="already exists"):
        export(tiny_run, tiny_data, out, FAST)
    export(tiny_run, tiny_data, out, FAST, overwrite=True)
    verify_bundle(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def _app() -> typer.Typer:
    from fusion_edge.cli.export_commands import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """root"""

    register(app)
    return app


def test_cli_export_then_verify_then_corrupt(
    tiny_run: Path, tiny_data: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    app = _app()
    out = tmp_path / "b"
    res = runner.invoke(
        app,
        [
            "export",
            str(tiny_run),
            "--data",
            str(tiny_data),
            "--out",
            str(out),
            "--precision",
            "fp32",
            "--latency-runs",
            "1",
            "--squad-size",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "fp32" in res.output and (out / "report.md").is_file()
    res = runner.invoke(app, ["bundle", "verify", str(out)])
    assert res.exit_code == 0 and "ok" in res.output
    data = bytearray((out / "model_fp32.onnx").read_bytes())
    data[-1] ^= 0xFF
    (out / "model_fp32.onnx").write_bytes(bytes(data))
    res = runner.invoke(app, ["bundle", "verify", str(out)])
    assert res.exit_code == 2
    assert "sha256" in res.output and "model_fp32.onnx" in res.output


def test_cli_unknown_precision_exits_nonzero(
    tiny_run: Path, tiny_data: Path, tmp_path: Path
) -> None:
    res = CliRunner().invoke(
        _app(),
        [
            "export",
            str(tiny_run),
            "--data",
            str(tiny_data),
            "--out",
            str(tmp_path / "b"),
            "--precision",
            "fp32,int3",
        ],
    )
    assert res.exit_code == 2 and "int3" in res.output
    assert not (tmp_path / "b").exists()


def test_pruned_export_records_sizes_and_smaller_config(
    tiny_run: Path, tiny_data: Path, tmp_path: Path
) -> None:
    cfg = ExportConfig(
        prune_ratio=0.5, fine_tune_epochs=1, precisions=("fp32",), latency_runs=1, squad_size=3
    )
    result = export(tiny_run, tiny_data, tmp_path / "b", cfg)
    manifest = verify_bundle(result.bundle)
    assert manifest["model_config"]["lstm_hidden"] == [32, 32]
    # Escalation gets the trained model, not the pruned one.
    full = next(v for v in manifest["variants"] if v["name"] == manifest["fallback"]["torch_variant"])
    assert full["model_config"]["lstm_hidden"] == [64, 64]
    assert full["metrics"] == result.rows[0]["metrics"]
    # Every row was timed in the same rounds, and the manifest holds those same figures.
    rows = {r["variant"]: r for r in result.rows}
    assert set(rows["pytorch"]["latency_ms"]) == set(rows["pytorch pruned 50%"]["latency_ms"]) == {
        "batch_1", "batch_3"}
    for v in manifest["variants"]:
        if v["name"] in rows:
            assert v["latency_ms"] == rows[v["name"]]["latency_ms"], v["name"]
    assert full["latency_ms"] == rows["pytorch"]["latency_ms"]
    pruning = manifest["pruning"]
    assert pruning["round_to"] == 8  # the export's default: SIMD-aligned widths
    assert pruning["params_after"] < 0.4 * pruning["params_before"]
    assert pruning["flops_after"] < pruning["flops_before"]
    assert [r["variant"] for r in result.rows][:3] == ["pytorch", "pytorch pruned 50%", "fp32"]
    report = (tmp_path / "b" / "report.md").read_text()
    assert (
        "pruned 50.0% of units, widths rounded to multiples of 8 (conv 32/48/64 -> 16/24/32, "
        "latent 64 -> 32, LSTM 64/64 -> 32/32, attention 32 -> 16)"
    ) in report
    # The pruned rows are related to the trained model, not to themselves: the pruned FP32's
    # step is its export from the pruned model, its total and its eager speedup the trained one's.
    trained, pruned, fp32 = result.rows[:3]
    assert pruned["derived_from"] == "pytorch" and fp32["derived_from"] == "pytorch pruned 50%"
    for task in ("action", "quality"):
        assert pruned["delta_step"][task] == pytest.approx(pruned["headline"][task] - trained["headline"][task])
        assert fp32["delta_total"][task] == pytest.approx(fp32["headline"][task] - trained["headline"][task])
    lat = fp32["latency_ms"]["batch_1"]
    assert fp32["speedups"]["batch_1"]["vs_torch"] == pytest.approx(trained["latency_ms"]["batch_1"] / lat)
    assert "delta_total" not in trained and "budget_check" in manifest["pruning"]


def test_pruning_over_its_budget_is_marked_and_says_what_to_change(
    tiny_run: Path, tiny_data: Path, tmp_path: Path
) -> None:
    """A prune that lost 14 tactic points used to read 'reference' with no word."""
    cfg = ExportConfig(prune_ratio=0.5, fine_tune_epochs=0, precisions=("fp32",), latency_runs=1,
                       squad_size=3, max_prune_accuracy_drop=-1.0)  # nothing can meet it
    result = export(tiny_run, tiny_data, tmp_path / "b", cfg)
    assert result.rows[1]["status"] == "over budget"
    note = next(n for n in result.notes if n.startswith("pruning 50% costs more than its budget"))
    assert "action" in note and "--fine-tune-epochs, 0 now" in note and "prune less (--prune)" in note
    assert verify_bundle(result.bundle)["pruning"]["budget_check"]["ok"] is False


def test_negative_fine_tune_epochs_are_refused() -> None:
    with pytest.raises(ConfigError, match="--fine-tune-epochs must be 0 or more, got -1"):
        ExportConfig(prune_ratio=0.5, fine_tune_epochs=-1)


def test_export_prunes_to_a_parameter_budget(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    from fusion_edge.toolkit.checkpoint import load_run
    from fusion_edge.toolkit.model import count_parameters

    budget = count_parameters(load_run(tiny_run)[0]) // 2
    cfg = ExportConfig(
        precisions=("fp32",), latency_runs=1, squad_size=3, prune_params=budget, fine_tune_epochs=1
    )
    result = export(tiny_run, tiny_data, tmp_path / "b", cfg)
    pruning = verify_bundle(tmp_path / "b")["pruning"]
    assert pruning["budget"] == {"params": budget}
    assert pruning["params_after"] <= budget < pruning["params_before"]
    assert 0 < pruning["ratio"] < 0.95
    assert any(r["variant"].startswith("pytorch pruned") for r in result.rows)
    report = (tmp_path / "b" / "report.md").read_text()
    assert f"parameters {pruning['params_before']:,} -> {pruning['params_after']:,}" in report


def test_cli_counts_take_suffixes() -> None:
    from fusion_edge.cli.export_commands import parse_count

    assert parse_count("40k", "--x") == 40_000
    assert parse_count("3M", "--x") == 3_000_000
    assert parse_count("1,500", "--x") == 1500
    assert parse_count("", "--x") == 0
    with pytest.raises(ConfigError, match="--prune-to-params 'forty' is not a count"):
        parse_count("forty", "--prune-to-params")
    for bad in ("nan", "inf", "1e400"):  # used to end in a ValueError / OverflowError traceback
        with pytest.raises(ConfigError, match=f"--prune-to-params '{bad}' is not a count"):
            parse_count(bad, "--prune-to-params")
    with pytest.raises(ConfigError, match="a positive count \\(1 or more\\), got '0.5'"):
        parse_count("0.5", "--prune-to-params")  # rounded to 0 = unset: exported unpruned, silently


def test_overwrite_never_deletes_a_folder_that_is_not_a_bundle(
    tiny_run: Path, tiny_data: Path, tmp_path: Path
) -> None:
    # `export RUN --data DATA --out DATA --overwrite` used to delete the dataset it read.
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    with pytest.raises(BundleError, match=r"is not a bundle \(it has no manifest.json\)"):
        export(tiny_run, data, data, FAST, overwrite=True)
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
    with pytest.raises(BundleError, match="is not a bundle"):
        export(tiny_run, tiny_data, tiny_run, FAST, overwrite=True)
    assert (tiny_run / "model.safetensors").is_file() and (tiny_run / "config.json").is_file()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BundleError, match="is a file, not a bundle folder"):
        export(tiny_run, tiny_data, blocker, FAST, overwrite=True)
    assert blocker.read_text() == "x"


def test_taken_output_is_refused_before_any_work(tiny_data: Path, tmp_path: Path) -> None:
    # Checked first: a missing run would otherwise be the error, after loading (and, with
    # --prune, after the whole fine-tune).
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text("{}")
    with pytest.raises(BundleError, match="already exists"):
        export(tmp_path / "no-run", tiny_data, tmp_path / "b", FAST)


def test_a_dataset_of_only_seen_players_is_refused_with_what_to_use(
    tiny_run: Path, tiny_data: Path, tmp_path: Path
) -> None:
    from fusion_edge.toolkit.checkpoint import read_run_info
    from fusion_edge.toolkit.dataset import Dataset, write_dataset

    info = read_run_info(tiny_run)
    ds = Dataset.open(tiny_data)
    keep = np.isin(ds.player.astype(str), np.asarray(info.split.train))
    seen = write_dataset(
        tmp_path / "seen", ds.spec, {k: v[keep] for k, v in ds.inputs.items()},
        {k: v[keep] for k, v in ds.targets.items()}, ds.player[keep], ds.session[keep],
    )
    with pytest.raises(DatasetError, match="holds only players the run trained or validated on"):
        export(tiny_run, seen, tmp_path / "bundle", ExportConfig(precisions=("fp32",), latency_runs=1))
    assert not (tmp_path / "bundle").exists()


def test_the_default_calibration_set_shrinks_to_a_small_runs_training_windows(
    tiny_run: Path, tiny_data: Path, tmp_path: Path
) -> None:
    """256 by default used to refuse every export of a run with fewer training windows."""
    from fusion_edge.export.pipeline import DEFAULT_CALIBRATION_WINDOWS, calibration_set
    from fusion_edge.toolkit.checkpoint import read_run_info
    from fusion_edge.toolkit.dataset import Dataset, write_dataset

    info, full = read_run_info(tiny_run), Dataset.open(tiny_data)
    player = full.player.astype(str)
    keep = np.array([np.sum(player[:i] == p) < 20 for i, p in enumerate(player)])  # 20 a player
    ds = Dataset.open(write_dataset(
        tmp_path / "small", full.spec, {k: v[keep] for k, v in full.inputs.items()},
        {k: v[keep] for k, v in full.targets.items()}, full.player[keep], full.session[keep],
    ))
    train = info.split.indices(ds.player.astype(str), "train").size
    assert 16 <= train < DEFAULT_CALIBRATION_WINDOWS
    assert len(calibration_set(info, ds, ExportConfig())) == train
    with pytest.raises(CalibrationError, match=f"asked for {train + 1} calibration windows but only {train}"):
        calibration_set(info, ds, ExportConfig(calibration_windows=train + 1))


def test_a_head_the_held_out_players_have_no_label_for_is_unscored_not_zero(
    tiny_run: Path, tiny_data: Path, tmp_path: Path
) -> None:
    """Quality rated only for the training players: the table used to show 0.0 / nan for it,
    and the INT8 budget compared nothing with nothing."""
    from fusion_edge.toolkit.checkpoint import read_run_info
    from fusion_edge.toolkit.dataset import Dataset, write_dataset

    info, ds = read_run_info(tiny_run), Dataset.open(tiny_data)
    targets = dict(ds.targets)
    rated = np.isin(ds.player.astype(str), np.asarray(info.split.train))
    targets["quality"] = np.where(rated, targets["quality"], np.nan).astype(np.float32)
    data = write_dataset(tmp_path / "d", ds.spec, dict(ds.inputs), targets, ds.player, ds.session)
    cfg = ExportConfig(precisions=("fp32", "int8"), calibration_windows=32, latency_runs=1, squad_size=3)
    res = export(tiny_run, data, tmp_path / "bundle", cfg)
    assert any("no test window carries a label of quality" in n for n in res.notes)
    by = {r["variant"]: r for r in res.rows}
    for r in by.values():
        if "headline" in r:
            assert r["headline"]["quality"] is None and r["headline"]["action"] is not None
    assert "quality" not in by["int8_cpu"]["delta_fp32"] and "action" in by["int8_cpu"]["delta_fp32"]
    report = json.loads((tmp_path / "bundle" / "report.json").read_text(),
                        parse_constant=lambda c: pytest.fail(f"{c} in report.json"))
    assert report["rows"][0]["headline"]["quality"] is None
    verify_bundle(tmp_path / "bundle")


def test_budget_check_passes_over_a_head_with_no_labelled_window() -> None:
    from fusion_edge.export.measure import AccuracyBudget, budget_check

    ref = {"action": {"accuracy": 0.9, "support": 10}, "quality": {"relative_error": None, "support": 0}}
    worse = {"action": {"accuracy": 0.8, "support": 10}, "quality": {"relative_error": None, "support": 0}}
    ok, detail = budget_check(ref, worse, AccuracyBudget(0.005, 0.1))
    assert not ok and detail["per_task"]["quality"] == {"ok": True, "checked": False}
    ok, _ = budget_check(ref, ref, AccuracyBudget(0.005, 0.1))
    assert ok


def test_calibration_is_stratified_by_the_runs_own_class_task_whatever_its_name() -> None:
    """The default named 'action' and dropped names the dataset lacked, so a run whose class
    task is 'Phase' was calibrated by session only."""
    from types import SimpleNamespace

    from fusion_edge.export.pipeline import default_stratify_by

    def info(*tasks: tuple[str, str, int]) -> SimpleNamespace:
        return SimpleNamespace(model=SimpleNamespace(tasks=tasks))

    assert default_stratify_by(info(("Belastung", "regression", 1), ("Phase", "class", 3))) == ("Phase", "session")
    assert default_stratify_by(info(("rpe", "regression", 1))) == ("session",)


def test_an_unknown_stratify_key_is_refused_not_dropped(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    cfg = ExportConfig(precisions=("fp32", "int8"), calibration_windows=32, latency_runs=1, squad_size=3,
                       stratify_by=("acton", "session"))
    with pytest.raises(CalibrationError, match="cannot stratify calibration windows by 'acton'"):
        export(tiny_run, tiny_data, tmp_path / "bundle", cfg)
    assert not (tmp_path / "bundle").exists()


def test_engines_are_the_reduced_precisions_asked_for(
    tiny_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--precision fp32,fp16 --format onnx,engine listed an engine_int8 row too."""
    import fusion_edge.export.tensorrt as trt_mod

    asked: list[tuple[str, ...]] = []

    def fake_build(bundle, *, precisions, max_batch, **_):
        asked.append(precisions)
        return [{"variant": f"engine_{p}", "status": "skipped: no tensorrt here", "precision": p}
                for p in precisions]

    monkeypatch.setattr(trt_mod, "build_engines", fake_build)
    cfg = ExportConfig(precisions=("fp32", "fp16"), formats=("onnx", "engine"), latency_runs=1, squad_size=3)
    res = export(tiny_run, tiny_data, tmp_path / "b", cfg)
    assert asked == [("fp16",)]
    assert [r["variant"] for r in res.rows if r["variant"].startswith("engine")] == ["engine_fp16"]
    export(tiny_run, tiny_data, tmp_path / "c", ExportConfig(
        precisions=("fp32",), formats=("onnx", "engine"), latency_runs=1, squad_size=3))
    assert asked[-1] == ("fp32",)
