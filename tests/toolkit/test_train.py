"""Training and run folders: what a run writes, that it reloads exactly, grouped splits, every
checkpoint error, and that training actually learns."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sign_data import sign_dataset

from fusion_edge.errors import CheckpointError, DatasetError
from fusion_edge.toolkit.checkpoint import (
    RUN_FORMAT,
    RUN_VERSION,
    Normalization,
    load_run,
    read_run_info,
)
from fusion_edge.toolkit.dataset import Dataset
from fusion_edge.toolkit.model import ModelConfig, MultimodalCnnLstm
from fusion_edge.toolkit.splits import GroupedSplit, split_by_player
from fusion_edge.toolkit.train import TrainConfig, predict, train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def copy_run(trained_run, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(trained_run.path, dst)
    return dst


def edit_config(run: Path, **changes) -> None:
    cfg = run / "config.json"
    doc = json.loads(cfg.read_text())
    doc.update(changes)
    cfg.write_text(json.dumps(doc))


# ------------------------------------------------------------------ the run folder


def test_run_folder_holds_weights_and_config(trained_run) -> None:
    run = trained_run.path
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "model.safetensors"]
    doc = json.loads((run / "config.json").read_text())
    assert doc["format"] == RUN_FORMAT and doc["version"] == RUN_VERSION
    assert set(doc) >= {"model", "dataset", "normalization", "split", "train", "history", "metrics"}
    assert [row["epoch"] for row in doc["history"]] == [1, 2]
    assert doc["train"]["epochs"] == 2 and doc["train"]["best_epoch"] in (1, 2)
    assert set(doc["metrics"]["val"]) == {"action", "tactic", "quality"}
    assert set(doc["normalization"]) == {"imu", "position"}
    # The weights file is safetensors (a JSON header), never a pickle.
    head = (run / "model.safetensors").read_bytes()[:64]
    assert not head.startswith(b"\x80") and b"PK" not in head[:4]
    n = int.from_bytes(head[:8], "little")
    header = json.loads((run / "model.safetensors").read_bytes()[8 : 8 + n])
    assert header["__metadata__"]["format"] == RUN_FORMAT


def test_load_run_restores_identical_outputs(trained_run) -> None:
    model, info = load_run(trained_run.path)
    ds = Dataset.open(trained_run.data)
    idx = np.arange(40)
    xs = [
        torch.from_numpy(info.normalization.apply(m.name, ds.inputs[m.name][idx]))
        for m in ds.spec.modalities
    ]
    again = predict(model, xs)
    original = predict(trained_run.result.model, xs)
    assert len(again) == 3
    for a, b in zip(again, original, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not model.training
    assert info.model == trained_run.result.model.config
    assert info.split == trained_run.result.split


def test_normalization_comes_from_the_training_split_only(trained_run) -> None:
    info = read_run_info(trained_run.path)
    ds = Dataset.open(trained_run.data)
    tr = info.split.indices(ds.player, "train")
    expected = Normalization.fit({"imu": ds.inputs["imu"][tr]})
    np.testing.assert_allclose(info.normalization.mean["imu"], expected.mean["imu"], rtol=1e-5)
    np.testing.assert_allclose(info.normalization.std["imu"], expected.std["imu"], rtol=1e-5)
    z = info.normalization.apply("imu", ds.inputs["imu"][tr])
    np.testing.assert_allclose(z.mean(axis=(0, 2)), 0.0, atol=1e-3)


def test_no_player_is_in_two_splits(trained_run) -> None:
    split = read_run_info(trained_run.path).split
    parts = [set(split.train), set(split.val), set(split.test)]
    assert all(parts)
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    players = set(Dataset.open(trained_run.data).player.astype(str).tolist())
    assert parts[0] | parts[1] | parts[2] == players
    assert len(parts[0]) == 14 and len(parts[1]) == 3 and len(parts[2]) == 3  # 70/15/15 of 20


def test_split_by_player_is_grouped_seeded_and_refuses_too_few_players() -> None:
    player = np.array([f"p{i % 10}" for i in range(200)])
    a = split_by_player(player, seed=3)
    assert a == split_by_player(player, seed=3)
    assert a != split_by_player(player, seed=4)
    for part in ("train", "val", "test"):
        members = set(player[a.indices(player, part)])
        assert members == set(getattr(a, part))
    assert GroupedSplit.from_json(json.loads(json.dumps(a.to_json()))) == a
    with pytest.raises(
        DatasetError, match=r"2 player\(s\); a grouped train/val/test split needs at least 3"
    ):
        split_by_player(np.array(["a", "b", "a"]))


# ------------------------------------------------------------------ checkpoint errors


def test_missing_config_json(trained_run, tmp_path: Path) -> None:
    run = copy_run(trained_run, tmp_path)
    (run / "config.json").unlink()
    with pytest.raises(
        CheckpointError,
        match=r"is not a training run: config\.json is missing \(train one with "
        r"'fusion-edge train --data DIR --out .*run'\)",
    ):
        load_run(run)


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="it does not exist"):
        load_run(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="it is a file, and a run is a folder"):
        load_run(tmp_path / "file")


def test_bundle_or_dataset_given_as_a_run_is_named(tmp_path: Path) -> None:
    """A bundle given where a run belongs used to be told to train one."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"source_run": "/kit/runs/r1"}))
    with pytest.raises(CheckpointError, match=r"is a bundle from 'fusion-edge export' \(made from "
                                              r"the run /kit/runs/r1\), not a training run"):
        load_run(bundle)
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"is a dataset, not a training run: train one with "
                                              r"'fusion-edge train --data .*data --out RUN'"):
        load_run(data)


def test_unknown_version(trained_run, tmp_path: Path) -> None:
    run = copy_run(trained_run, tmp_path)
    edit_config(run, version=99)
    with pytest.raises(
        CheckpointError,
        match=r"has run format version 99, this fusion-edge reads version 1: retrain",
    ):
        load_run(run)


def test_other_format(trained_run, tmp_path: Path) -> None:
    run = copy_run(trained_run, tmp_path)
    edit_config(run, format="someone-else")
    with pytest.raises(
        CheckpointError, match=r"is not a fusion-edge run \(format 'someone-else'\)"
    ):
        load_run(run)


def test_config_that_is_not_json(trained_run, tmp_path: Path) -> None:
    run = copy_run(trained_run, tmp_path)
    (run / "config.json").write_text("{ half")
    with pytest.raises(
        CheckpointError, match=r"is not valid JSON .*the run folder is corrupt, retrain"
    ):
        load_run(run)


def test_config_missing_a_section(trained_run, tmp_path: Path) -> None:
    run = copy_run(trained_run, tmp_path)
    doc = json.loads((run / "config.json").read_text())
    del doc["normalization"]
    (run / "config.json").write_text(json.dumps(doc))
    with pytest.raises(
        CheckpointError, match=r"lacks the key 'normalization'; the run folder is incomplete"
    ):
        load_run(run)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupted_safetensors(trained_run, tmp_path: Path, damage: str) -> None:
    run = copy_run(trained_run, tmp_path)
    weights = run / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(
        {"garbage": b"not a tensor file" * 20, "truncated": data[: len(data) // 2], "empty": b""}[
            damage
        ]
    )
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors cannot be read .*the file is corrupt, retrain"
    ):
        load_run(run)


def test_missing_weights(trained_run, tmp_path: Path) -> None:
    run = copy_run(trained_run, tmp_path)
    (run / "model.safetensors").unlink()
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors is missing: the run did not finish; retrain"
    ):
        load_run(run)


@pytest.mark.parametrize("change", [{"temporal": "none"}, {"latent": 12}])
def test_weights_of_another_model(trained_run, tmp_path: Path, change: dict) -> None:
    """Weights whose layers (or layer sizes) differ from config.json's model are refused."""
    from safetensors.torch import save_file

    run = copy_run(trained_run, tmp_path)
    other = MultimodalCnnLstm(replace(read_run_info(run).model, **change))
    save_file(
        {k: v.contiguous() for k, v in other.state_dict().items()}, str(run / "model.safetensors")
    )
    with pytest.raises(CheckpointError, match=r"does not match its config\.json.*retrain"):
        load_run(run)


# ------------------------------------------------------------------ training learns


def test_training_learns_an_easy_task(tiny_model: dict) -> None:
    ds = sign_dataset()
    cfg = ModelConfig.for_dataset(ds.spec, **tiny_model)
    rows = []
    result = train(
        ds,
        cfg,
        TrainConfig(
            epochs=8, batch_size=32, lr=3e-3, device="cpu", seed=0, early_stop_patience=100
        ),
        show_progress=False,
        on_epoch=rows.append,
    )
    losses = [r["train_loss"] for r in result.history]
    assert rows == result.history and len(losses) == 8
    assert losses[-1] < 0.6 * losses[0], losses
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    assert result.val_metrics["sign"]["accuracy"] > 0.9
    assert result.best_epoch == int(np.argmin([r["val_loss"] for r in result.history])) + 1
    assert result.seconds > 0 and result.epoch_seconds > 0


def test_training_is_deterministic_under_a_seed(tiny_model: dict) -> None:
    ds = sign_dataset(n=96, players=6)
    cfg = ModelConfig.for_dataset(ds.spec, **tiny_model)
    tc = TrainConfig(epochs=2, batch_size=32, device="cpu", seed=5)
    a = train(ds, cfg, tc, show_progress=False)
    b = train(ds, cfg, tc, show_progress=False)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    for (k, va), (_, vb) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        assert torch.equal(va, vb), k


def test_missing_labels_are_ignored_by_the_loss(tiny_model: dict) -> None:
    ds = sign_dataset(n=96, players=6)
    labels = ds.targets["sign"].copy()
    labels[::2] = -1  # half the windows have no label
    ds = Dataset(ds.spec, ds.inputs, {"sign": labels}, ds.player, ds.session)
    cfg = ModelConfig.for_dataset(ds.spec, **tiny_model)
    result = train(ds, cfg, TrainConfig(epochs=1, batch_size=32, device="cpu"), show_progress=False)
    assert np.isfinite(result.history[0]["train_loss"]) and np.isfinite(
        result.history[0]["val_loss"]
    )
    assert result.val_metrics["sign"]["support"] == int(
        (labels[result.split.indices(ds.player, "val")] >= 0).sum()
    )


def test_cuda_asked_for_without_a_gpu(tiny_model: dict) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    ds = sign_dataset(n=60, players=4)
    cfg = ModelConfig.for_dataset(ds.spec, **tiny_model)
    with pytest.raises(
        DatasetError,
        match="--device cuda was asked for, but torch sees no CUDA GPU; use --device cpu",
    ):
        train(ds, cfg, TrainConfig(epochs=1, device="cuda"), show_progress=False)


def _rpe_dataset(value_range, n: int = 240, players: int = 8) -> Dataset:
    """An RPE on its own 0-10 scale (values 3-7.5) that channel 0's mean encodes."""
    from fusion_edge.toolkit.dataset import DatasetSpec, ModalitySpec, TaskSpec

    rng = np.random.default_rng(0)
    rpe = rng.uniform(3.0, 7.5, n).astype(np.float32)
    x = rng.normal(0.0, 1.0, (n, 2, 40)).astype(np.float32)
    x[:, 0] += (rpe - 5.25)[:, None]
    spec = DatasetSpec(
        modalities=(ModalitySpec("sensor", ("s0", "s1"), ("", ""), 20.0, 40),),
        tasks=(TaskSpec("rpe", "regression", value_range=value_range),),
        window_seconds=2.0,
        hop_seconds=2.0,
    )
    player = np.array([f"p{i % players}" for i in range(n)])
    return Dataset(spec, {"sensor": x}, {"rpe": rpe}, player, np.full(n, "s"))


def test_a_regression_task_without_a_range_gets_the_training_values_range(tiny_model: dict) -> None:
    """The sigmoid head used to stay in [0, 1] for such a task, so an RPE of 3-7.5 came out
    as about 0.5 whatever the input."""
    from fusion_edge.toolkit.train import RANGE_MARGIN, resolve_value_ranges

    ds = _rpe_dataset(None)
    cfg = ModelConfig.for_dataset(ds.spec, **tiny_model)
    split = split_by_player(ds.player, seed=0)
    tr = split.indices(ds.player, "train")
    lo, hi = resolve_value_ranges(cfg, ds, tr).value_ranges[0]
    y = ds.targets["rpe"][tr]
    spread = float(y.max() - y.min())
    assert lo == pytest.approx(y.min() - RANGE_MARGIN * spread) and hi == pytest.approx(y.max() + RANGE_MARGIN * spread)
    result = train(ds, cfg, TrainConfig(epochs=6, batch_size=32, lr=3e-3, device="cpu"), show_progress=False)
    assert result.model.config.value_ranges[0] == pytest.approx((lo, hi))
    (pred,) = predict(result.model, [torch.from_numpy(result.normalization.apply("sensor", ds.inputs["sensor"]))])
    assert pred.min() >= lo and pred.max() <= hi and pred.max() > 6.0  # well past 1
    m = result.val_metrics["rpe"]
    assert m["mae"] < 1.0 and m["relative_error"] == pytest.approx(m["mae"] / (hi - lo))


def test_a_range_given_is_kept_and_the_loss_is_in_units_of_it(tiny_model: dict) -> None:
    from fusion_edge.toolkit.train import resolve_value_ranges, task_losses

    ds = _rpe_dataset((0.0, 10.0))
    cfg = ModelConfig.for_dataset(ds.spec, **tiny_model)
    assert resolve_value_ranges(cfg, ds, np.arange(len(ds))).value_ranges == ((0.0, 10.0),)
    model = MultimodalCnnLstm(cfg)
    y = torch.tensor([3.0, 7.0, float("nan")])
    out = torch.tensor([4.0, 5.0, 9.0])
    (loss,) = task_losses(model, [out], [y])
    assert float(loss) == pytest.approx(((0.1) ** 2 + (0.2) ** 2) / 2)  # errors 1 and 2 of 10


def test_a_class_only_held_out_players_show_is_named_in_the_notes(tiny_model: dict) -> None:
    from fusion_edge.toolkit.dataset import DatasetSpec, TaskSpec

    base = sign_dataset(n=160, players=8)
    split = split_by_player(base.player, seed=0)
    keeper = split.val[0]
    labels = base.targets["sign"].copy()
    labels[base.player == keeper] = 2  # only this player dives
    spec = DatasetSpec(
        modalities=base.spec.modalities,
        tasks=(TaskSpec("sign", "class", labels=("negative", "positive", "dive")),),
        window_seconds=2.0,
        hop_seconds=2.0,
    )
    ds = Dataset(spec, base.inputs, {"sign": labels}, base.player, base.session)
    cfg = ModelConfig.for_dataset(ds.spec, **tiny_model)
    result = train(ds, cfg, TrainConfig(epochs=1, device="cpu", seed=0), show_progress=False)
    assert result.notes == [
        f"class 'dive' of task 'sign' has no training window: only {keeper} (validation) shows it, "
        "so the model never learns it. Train with another --seed (another split), or record it "
        "for more players"
    ]
    plain = train(base, ModelConfig.for_dataset(base.spec, **tiny_model),
                  TrainConfig(epochs=1, device="cpu", seed=0), show_progress=False)
    assert plain.notes == []
