"""The dataset on-disk format: round trip, every validation error, atomicity, no pickle."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from fusion_edge.errors import DatasetError
from fusion_edge.toolkit.dataset import (
    FORMAT,
    FORMAT_VERSION,
    Dataset,
    DatasetSpec,
    DatasetWriter,
    ModalitySpec,
    TaskKind,
    TaskSpec,
    write_dataset,
)

N = 50


def make_spec(**kw) -> DatasetSpec:
    base = dict(
        modalities=(
            ModalitySpec("imu", ("ax", "ay", "az"), ("m/s^2",) * 3, 100.0, 200),
            ModalitySpec("gnss", ("x", "y"), ("m", "m"), 10.0, 20),
        ),
        tasks=(
            TaskSpec("action", "class", ("run", "pass", "shoot")),
            TaskSpec("quality", TaskKind.REGRESSION, value_range=(0.0, 10.0)),
        ),
        window_seconds=2.0,
        hop_seconds=1.0,
        preprocessing={"moving_average": 5},
        source={"scenario": "rondo", "seed": 3},
        description="test data",
    )
    base.update(kw)
    return DatasetSpec(**base)


def make_arrays(n: int = N, seed: int = 0):
    rng = np.random.default_rng(seed)
    inputs = {"imu": rng.normal(size=(n, 3, 200)).astype(np.float32),
              "gnss": rng.normal(size=(n, 2, 20)).astype(np.float32)}
    action = rng.integers(0, 3, n)
    action[::5] = -1
    quality = rng.uniform(0, 10, n).astype(np.float32)
    quality[::4] = np.nan
    targets = {"action": action, "quality": quality}
    player = [f"p{i % 4}" for i in range(n)]
    session = ["2024-05-01" if i < n // 2 else "2024-05-02" for i in range(n)]
    return inputs, targets, player, session


@pytest.fixture()
def written(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    write_dataset(root, make_spec(), *make_arrays(), shard_windows=20)
    return root


def load_doc(root: Path) -> dict:
    return json.loads((root / "dataset.json").read_text())


def save_doc(root: Path, doc: dict) -> None:
    (root / "dataset.json").write_text(json.dumps(doc))


def rewrite_shard(root: Path, index: int, **changes) -> None:
    """Replace arrays in one shard and fix its bytes/sha256 in dataset.json (a consistent lie)."""
    doc = load_doc(root)
    path = root / doc["shards"][index]["file"]
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    data.update(changes)
    with path.open("wb") as f:
        np.savez(f, **data)
    doc["shards"][index]["bytes"] = path.stat().st_size
    doc["shards"][index]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    save_doc(root, doc)


# ---------------------------------------------------------------- spec


def test_spec_json_round_trip_and_kinds() -> None:
    spec = make_spec(source={"seeds": (1, 2)})
    assert spec.tasks[0].kind == "class" and spec.tasks[1].kind == "regression"
    assert spec.tasks[0].num_classes == 3 and spec.tasks[0].is_classification
    assert spec.tasks[1].num_classes == 0 and not spec.tasks[1].is_classification
    doc = json.loads(json.dumps(spec.to_json()))
    assert doc["format"] == FORMAT and doc["format_version"] == FORMAT_VERSION
    assert DatasetSpec.from_json(doc) == spec
    assert spec.source == {"seeds": [1, 2]}  # stored as dataset.json will hold it
    assert spec.modality("gnss").shape == (2, 20)
    assert spec.task("action").labels == ("run", "pass", "shoot")
    with pytest.raises(DatasetError, match=r"no modality 'video' \(it has: imu, gnss\)"):
        spec.modality("video")


def test_spec_rejects_window_samples_that_do_not_match_the_rate() -> None:
    with pytest.raises(DatasetError, match=re.escape(
            "modality 'imu': window_samples=150 does not match window_seconds * sample_rate_hz "
            "= 2 * 100 = 200. Set window_samples to 200")):
        make_spec(modalities=(ModalitySpec("imu", ("ax",), ("g",), 100.0, 150),))


@pytest.mark.parametrize(("kw", "message"), [
    (dict(name="a", kind="class"), "task 'a' is a class task: give its label names in 'labels'"),
    (dict(name="a", kind="ordinal"), "task 'a' kind 'ordinal' is not known"),
    (dict(name="a", kind="regression", value_range=(3, 1)), "value_range must be [low, high]"),
    (dict(name="a b", kind="class", labels=("x",)), "task name 'a b' is not valid"),
    (dict(name="a", kind="class", labels=("x", "x")), "task 'a' labels must be unique"),
])
def test_task_spec_validation(kw: dict, message: str) -> None:
    with pytest.raises(DatasetError, match=re.escape(message)):
        TaskSpec(**kw)


def test_from_json_missing_and_unknown_keys_name_key_and_file() -> None:
    doc = make_spec().to_json()
    del doc["hop_seconds"]
    with pytest.raises(DatasetError, match=re.escape("x/dataset.json: missing key 'hop_seconds'")):
        DatasetSpec.from_json(doc, file="x/dataset.json")
    doc = make_spec().to_json()
    doc["modalities"][1]["rate"] = 10
    with pytest.raises(DatasetError, match=re.escape(
            "dataset.json: modalities[1]: unknown key 'rate'. Remove it")):
        DatasetSpec.from_json(doc)


# ---------------------------------------------------------------- round trip


def test_round_trip_across_shards(written: Path) -> None:
    inputs, targets, player, session = make_arrays()
    doc = load_doc(written)
    assert [s["num_windows"] for s in doc["shards"]] == [20, 20, 10]
    assert doc["num_windows"] == N
    assert sorted(p.name for p in (written / "shards").iterdir()) == [
        "shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    ds = Dataset.open(written)
    assert len(ds) == ds.num_windows == N and ds.root == written
    assert ds.spec == make_spec()
    for name, arr in inputs.items():
        assert ds.inputs[name].dtype == np.float32
        np.testing.assert_array_equal(ds.inputs[name], arr)
    assert ds.targets["action"].dtype == np.int64
    np.testing.assert_array_equal(ds.targets["action"], targets["action"])
    assert ds.targets["quality"].dtype == np.float32
    np.testing.assert_array_equal(ds.targets["quality"], targets["quality"])  # NaN == NaN here
    assert ds.player.dtype.kind == "U" and list(ds.player) == player
    assert list(ds.session) == session
    with np.load(written / "shards/shard-00000.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["input.gnss", "input.imu", "player", "session",
                                   "target.action", "target.quality"]


def test_many_small_adds_make_the_same_dataset(tmp_path: Path) -> None:
    inputs, targets, player, session = make_arrays()
    with DatasetWriter(tmp_path / "ds", make_spec(), shard_windows=16) as w:
        for lo in range(0, N, 7):
            sl = slice(lo, lo + 7)
            w.add({k: v[sl] for k, v in inputs.items()}, {k: v[sl] for k, v in targets.items()},
                  player[sl], session[sl])
    ds = Dataset.open(tmp_path / "ds")
    assert [s["num_windows"] for s in load_doc(tmp_path / "ds")["shards"]] == [16, 16, 16, 2]
    np.testing.assert_array_equal(ds.inputs["imu"], inputs["imu"])
    assert list(ds.player) == player


def test_subset_and_summary(written: Path) -> None:
    ds = Dataset.open(written)
    sub = ds.subset(ds.player == "p1")
    assert len(sub) == 13 and set(sub.player) == {"p1"} and sub.spec is ds.spec
    np.testing.assert_array_equal(sub.inputs["gnss"], ds.inputs["gnss"][ds.player == "p1"])
    assert len(ds.subset([0, 3, 5])) == 3
    summary = ds.summary()
    json.dumps(summary)  # printable as JSON
    action = summary["tasks"]["action"]
    assert action["missing"] == 10
    assert sum(action["counts"].values()) == 40 and list(action["counts"]) == ["run", "pass",
                                                                              "shoot"]
    assert summary["tasks"]["quality"]["missing"] == 13
    assert summary["players"] == {"p0": 13, "p1": 13, "p2": 12, "p3": 12}
    assert summary["sessions"] == {"2024-05-01": 25, "2024-05-02": 25}


def test_in_memory_dataset_is_validated() -> None:
    inputs, targets, player, session = make_arrays()
    ds = Dataset(make_spec(), inputs, targets, player, session)
    assert len(ds) == N and ds.root is None
    targets["action"][0] = 3
    with pytest.raises(DatasetError, match=re.escape("Dataset(): targets['action'] has 1 labels")):
        Dataset(make_spec(), inputs, targets, player, session)


# ---------------------------------------------------------------- writer validation


def add_with(tmp_path: Path, **changes):
    """Add one batch with some arrays replaced; the writer must keep nothing of it."""
    inputs, targets, player, session = make_arrays()
    inputs.update({k: v for k, v in changes.items() if k in inputs})
    targets.update({k: v for k, v in changes.items() if k in targets})
    player = changes.get("player", player)
    session = changes.get("session", session)
    w = DatasetWriter(tmp_path / "ds", make_spec())
    try:
        w.add(inputs, targets, player, session)
    finally:
        assert w.num_windows == 0  # nothing bad was buffered
        w.abort()


def test_writer_rejects_shape_mismatch(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=re.escape(
            "DatasetWriter.add(): inputs['imu'] has shape (50, 4, 200), expected [N, 3, 200] "
            "(windows, channels ['ax', 'ay', 'az'], window_samples)")):
        add_with(tmp_path, imu=np.zeros((N, 4, 200), np.float32))
    with pytest.raises(DatasetError, match=re.escape(
            "inputs['gnss'] has shape (49, 2, 20), expected (50, 2, 20)")):
        add_with(tmp_path, gnss=np.zeros((N - 1, 2, 20), np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_writer_rejects_non_finite_inputs(tmp_path: Path, bad: float) -> None:
    imu = make_arrays()[0]["imu"]
    imu[7, 1, 33] = bad
    with pytest.raises(DatasetError, match=re.escape(
            "inputs['imu'] has NaN/inf values in 1 windows (first at window 7, channel 'ay', "
            "sample 33). Interpolate short gaps or drop those windows")):
        add_with(tmp_path, imu=imu)


def test_writer_rejects_class_label_out_of_range(tmp_path: Path) -> None:
    action = make_arrays()[1]["action"]
    action[4] = 3
    with pytest.raises(DatasetError, match=re.escape(
            "targets['action'] has 1 labels outside [0, 3) (first: 3 at window 4); task 'action' "
            "has labels ['run', 'pass', 'shoot']. Use -1 for a window without this label")):
        add_with(tmp_path, action=action)
    action[4] = -2
    with pytest.raises(DatasetError, match=re.escape("(first: -2 at window 4)")):
        add_with(tmp_path, action=action)
    with pytest.raises(DatasetError, match="class labels must be integers"):
        add_with(tmp_path, action=np.full(N, 0.5))


def test_writer_rejects_regression_out_of_range(tmp_path: Path) -> None:
    quality = make_arrays()[1]["quality"]
    quality[9] = 10.5
    with pytest.raises(DatasetError, match=re.escape(
            "targets['quality'] has 1 values outside value_range [0, 10] (first: 10.5 at window "
            "9). Fix the values or widen value_range; NaN marks a missing label")):
        add_with(tmp_path, quality=quality)
    quality[9] = np.inf
    with pytest.raises(DatasetError, match="infinite values .first at window 9."):
        add_with(tmp_path, quality=quality)


def test_writer_rejects_object_arrays_and_bad_ids(tmp_path: Path) -> None:
    imu = make_arrays()[0]["imu"].astype(object)
    with pytest.raises(DatasetError, match=re.escape(
            "inputs['imu'] has dtype object; expected float32 numbers (object, string and complex "
            "arrays cannot be stored without pickle)")):
        add_with(tmp_path, imu=imu)
    with pytest.raises(DatasetError, match=re.escape(
            "'player' must hold strings, found dtype int64. Pass ids as str")):
        add_with(tmp_path, player=np.arange(N))
    with pytest.raises(DatasetError, match=re.escape("'session' has 1 empty ids")):
        add_with(tmp_path, session=[""] + ["s"] * (N - 1))
    with pytest.raises(DatasetError, match=re.escape("missing: ['quality'], unknown: ['q']")):
        inputs, targets, player, session = make_arrays()
        targets["q"] = targets.pop("quality")
        DatasetWriter(tmp_path / "ds2", make_spec()).add(inputs, targets, player, session)
    # Strings held as objects (a pandas column) are plain strings: stored as unicode.
    inputs, targets, player, session = make_arrays()
    write_dataset(tmp_path / "ok", make_spec(), inputs, targets, np.array(player, dtype=object),
                  session)
    assert Dataset.open(tmp_path / "ok").player.dtype.kind == "U"


def test_writer_refuses_non_empty_folder_unless_overwrite(written: Path) -> None:
    with pytest.raises(DatasetError, match=re.escape(
            f"{written} is not empty. Choose a new folder, or pass overwrite=True")):
        DatasetWriter(written, make_spec())
    inputs, targets, player, session = make_arrays(n=5, seed=1)
    write_dataset(written, make_spec(), inputs, targets, player, session, overwrite=True)
    ds = Dataset.open(written)
    assert len(ds) == 5 and len(list((written / "shards").iterdir())) == 1
    np.testing.assert_array_equal(ds.inputs["imu"], inputs["imu"])


def test_failed_overwrite_keeps_the_old_dataset(written: Path) -> None:
    # `fusion-edge simulate --overwrite` with a too-short session (or Ctrl-C) used to delete
    # the good dataset before it had written anything to replace it.
    old = Dataset.open(written)
    files = sorted(p.relative_to(written) for p in written.rglob("*"))
    with pytest.raises(DatasetError, match="no windows were added"):
        with DatasetWriter(written, make_spec(), overwrite=True):
            pass
    with pytest.raises(KeyboardInterrupt):
        with DatasetWriter(written, make_spec(), shard_windows=2, overwrite=True) as w:
            w.add(*make_arrays(n=5, seed=3))  # two new shards are on disk
            raise KeyboardInterrupt
    assert sorted(p.relative_to(written) for p in written.rglob("*")) == files
    again = Dataset.open(written)
    np.testing.assert_array_equal(again.inputs["imu"], old.inputs["imu"])
    # A successful overwrite leaves no trace of the old one.
    write_dataset(written, make_spec(), *make_arrays(n=5, seed=1), overwrite=True)
    assert len(Dataset.open(written)) == 5
    assert not [p for p in written.iterdir() if p.name.startswith(".overwritten-")]


# ---------------------------------------------------------------- atomicity


def test_exception_inside_writer_leaves_no_dataset(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    with pytest.raises(RuntimeError, match="recording ended"):
        with DatasetWriter(root, make_spec(), shard_windows=10) as w:
            w.add(*make_arrays())  # five shards are on disk now
            assert len(list((root / "shards").iterdir())) == 5
            raise RuntimeError("recording ended")
    assert not root.exists()


def test_exception_keeps_foreign_files(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError):
        with DatasetWriter(root, make_spec(), shard_windows=10, overwrite=True) as w:
            w.add(*make_arrays())
            raise RuntimeError
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]


def test_unclosed_writer_never_looks_complete(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    w = DatasetWriter(root, make_spec(), shard_windows=10)
    w.add(*make_arrays())  # shards written, process "dies" before close()
    assert not (root / "dataset.json").exists()
    with pytest.raises(DatasetError, match="is not a finished fusion-edge dataset"):
        Dataset.open(root)
    w.abort()


def test_closing_an_empty_writer_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=re.escape("no windows were added to")):
        with DatasetWriter(tmp_path / "ds", make_spec()):
            pass
    assert not (tmp_path / "ds").exists()


# ---------------------------------------------------------------- reader validation


def test_missing_dataset_json(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=re.escape(
            f"{tmp_path / 'dataset.json'} not found: {tmp_path} is not a finished fusion-edge "
            "dataset. Create one with `fusion-edge simulate`, or convert your recording (see "
            "docs/dataset-format.md)")):
        Dataset.open(tmp_path)


def test_open_missing_key(written: Path) -> None:
    doc = load_doc(written)
    del doc["tasks"]
    save_doc(written, doc)
    with pytest.raises(DatasetError, match=re.escape(
            f"{written / 'dataset.json'}: missing key 'tasks'")):
        Dataset.open(written)


def test_open_unknown_key(written: Path) -> None:
    doc = load_doc(written)
    doc["tasks"][0]["weights"] = [1, 2, 3]
    save_doc(written, doc)
    with pytest.raises(DatasetError, match=re.escape(
            f"{written / 'dataset.json'}: tasks[0]: unknown key 'weights'. Remove it, or check "
            "the spelling against docs/dataset-format.md")):
        Dataset.open(written)


def test_open_unknown_format_version(written: Path) -> None:
    doc = load_doc(written)
    doc["format_version"] = 2
    save_doc(written, doc)
    with pytest.raises(DatasetError, match=re.escape(
            "format_version 2 is not known (this fusion-edge reads version 1). Upgrade "
            "fusion-edge or re-create the dataset")):
        Dataset.open(written)
    doc["format"], doc["format_version"] = "other", 1
    save_doc(written, doc)
    with pytest.raises(DatasetError, match="format is 'other', expected 'fusion-edge-dataset'"):
        Dataset.open(written)


def test_open_shape_mismatch_against_dataset_json(written: Path) -> None:
    doc = load_doc(written)
    doc["modalities"][0]["channels"].append("mag")
    doc["modalities"][0]["units"].append("uT")
    save_doc(written, doc)
    with pytest.raises(DatasetError, match=re.escape(
            f"{written / 'shards/shard-00000.npz'}: 'input.imu' has shape (20, 3, 200), expected "
            "(20, 4, 200) (windows, channels ['ax', 'ay', 'az', 'mag'], window_samples)")):
        Dataset.open(written)


def test_open_window_count_mismatch(written: Path) -> None:
    doc = load_doc(written)
    doc["num_windows"] = 51
    save_doc(written, doc)
    with pytest.raises(DatasetError, match="'num_windows' is 51 but the shards hold 50 windows"):
        Dataset.open(written)


def test_open_tampered_shard_fails_sha256(written: Path) -> None:
    path = written / "shards/shard-00001.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=re.escape(
            f"{path}: sha256 does not match dataset.json (expected ")):
        Dataset.open(written)


def test_open_truncated_shard(written: Path) -> None:
    path = written / "shards/shard-00002.npz"
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size // 2])
    with pytest.raises(DatasetError, match=re.escape(
            f"{path} is {size // 2} bytes, dataset.json says {size}: the file is truncated")):
        Dataset.open(written)
    doc = load_doc(written)  # a dataset.json that agrees with the truncated file
    doc["shards"][2]["bytes"] = size // 2
    save_doc(written, doc)
    with pytest.raises(DatasetError, match=re.escape(
            f"{path} cannot be read as a .npz without pickle")):
        Dataset.open(written, verify_hashes=False)


def test_open_missing_shard(written: Path) -> None:
    (written / "shards/shard-00001.npz").unlink()
    with pytest.raises(DatasetError, match="shard-00001.npz is listed in dataset.json but missing"):
        Dataset.open(written)


def test_open_rejects_nan_inputs_in_a_shard(written: Path) -> None:
    imu = np.zeros((20, 3, 200), np.float32)
    imu[2, 0, 5] = np.nan
    rewrite_shard(written, 0, **{"input.imu": imu})
    with pytest.raises(DatasetError, match=re.escape(
            "shard-00000.npz: 'input.imu' has NaN/inf values in 1 windows (first at window 2, "
            "channel 'ax', sample 5)")):
        Dataset.open(written)


def test_open_rejects_labels_out_of_range_in_a_shard(written: Path) -> None:
    rewrite_shard(written, 1, **{"target.action": np.full(20, 7, np.int64)})
    with pytest.raises(DatasetError, match=re.escape(
            "shard-00001.npz: 'target.action' has 20 labels outside [0, 3) (first: 7 at window "
            "0)")):
        Dataset.open(written)


def test_open_rejects_regression_out_of_range_in_a_shard(written: Path) -> None:
    rewrite_shard(written, 0, **{"target.quality": np.full(20, -1.0, np.float32)})
    with pytest.raises(DatasetError, match=re.escape(
            "'target.quality' has 20 values outside value_range [0, 10] (first: -1 at window 0)")):
        Dataset.open(written)


def test_open_rejects_wrong_dtype_and_unknown_array(written: Path) -> None:
    rewrite_shard(written, 0, **{"input.gnss": np.zeros((20, 2, 20), np.float64)})
    with pytest.raises(DatasetError, match=re.escape(
            "'input.gnss' has dtype float64, expected float32")):
        Dataset.open(written)
    rewrite_shard(written, 0, **{"input.gnss": np.zeros((20, 2, 20), np.float32),
                                 "extra": np.zeros(3)})
    with pytest.raises(DatasetError, match="shard-00000.npz: unknown key 'extra'"):
        Dataset.open(written)


def test_open_never_unpickles(written: Path) -> None:
    ids = np.array([f"p{i}" for i in range(20)], dtype=object)  # np.savez pickles these
    rewrite_shard(written, 0, player=ids)
    with pytest.raises(DatasetError, match=re.escape(
            "shard-00000.npz cannot be read as a .npz without pickle (ValueError: Object arrays "
            "cannot be loaded when allow_pickle=False)")):
        Dataset.open(written)


def test_module_does_not_import_torch() -> None:
    import subprocess

    code = ("import sys, fusion_edge.toolkit.dataset, fusion_edge.toolkit.csv_import; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_open_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=re.escape(
            f"{tmp_path / 'nope'} does not exist or is not a folder. Create a dataset with "
            "`fusion-edge simulate`")):
        Dataset.open(tmp_path / "nope")


def test_golden_v1_dataset_still_opens() -> None:
    """A dataset written by format version 1 (committed bytes) reads back exactly."""
    golden = Path(__file__).resolve().parents[1] / "data" / "toolkit" / "dataset-v1"
    ds = Dataset.open(golden)
    rng = np.random.default_rng(11)  # how the golden arrays were made
    imu = np.round(rng.normal(size=(6, 3, 20)), 3).astype(np.float32)
    pos = np.round(rng.uniform(0, 100, size=(6, 2, 4)), 2).astype(np.float32)
    np.testing.assert_array_equal(ds.inputs["imu"], imu)
    np.testing.assert_array_equal(ds.inputs["position"], pos)
    np.testing.assert_array_equal(ds.targets["phase"], [0, 1, 1, -1, 2, 0])
    np.testing.assert_array_equal(ds.targets["effort"], [3.5, 8.0, np.nan, 7.25, 1.0, 0.0])
    assert list(ds.player) == ["Zoë"] * 3 + ["p-07"] * 3
    assert list(ds.session) == ["2024-05-01"] * 3 + ["2024-05-02"] * 3
    assert ds.spec.task("phase").labels == ("warmup", "drill", "rest")
    assert ds.spec.modality("position").sample_rate_hz == 2.0
    assert [s["num_windows"] for s in load_doc(golden)["shards"]] == [4, 2]
