"""Converting a user's CSV recording: windowing, labels, gaps, errors, and the docs' example."""

from __future__ import annotations

import codecs
import csv
import re
from pathlib import Path

import numpy as np
import pytest

from fusion_edge.errors import DatasetError
from fusion_edge.toolkit.csv_import import (
    import_csv,
    missing_cell,
    window_class_labels,
    window_regression,
)
from fusion_edge.toolkit.dataset import Dataset

DOC = Path(__file__).resolve().parents[2] / "docs" / "dataset-format.md"
RATE = 52
SECONDS = 30
CHANNELS = ["ax", "ay", "az", "hr", "skin_temp"]
LABELS = ["walk", "jog", "stride"]  # deliberately not alphabetical


def phase_of_second(s: int) -> str:
    return "walk" if s < 10 else "jog" if s < 22 else "stride"


def write_belt_csv(path: Path, *, players: tuple[str, ...] = ("p1",), blank_row: int | None = None,
                   bad_label_row: int | None = None) -> np.ndarray:
    """5 channels at 52 Hz for 30 s; sample values are exact in float32 so windows compare ==."""
    n = RATE * SECONDS
    signal = np.arange(n)[:, None] + np.arange(len(CHANNELS))[None, :] * 0.25
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["t", "player", *CHANNELS, "phase", "speed"])
        for i in range(n):
            for p in players:  # several players: rows interleaved, as a hub logs them
                cells = [f"{v:g}" for v in signal[i]]
                if i == blank_row:
                    cells[2] = ""
                label = "sprint" if i == bad_label_row else phase_of_second(i // RATE)
                out.writerow([f"{i / RATE:.6f}", p, *cells, label, f"{(i // RATE) * 0.5:g}"])
    return signal


def test_five_channels_at_52_hz_with_custom_labels(tmp_path: Path) -> None:
    csv_path = tmp_path / "belt.csv"
    signal = write_belt_csv(csv_path)
    result = import_csv(csv_path, tmp_path / "ds", channels=CHANNELS, sample_rate_hz=52,
                        window_seconds=2.0, hop_seconds=1.0, modality_name="belt",
                        units=["g", "g", "g", "bpm", "degC"],
                        label_columns={"phase": "phase", "speed": "speed"},
                        label_names={"phase": LABELS}, regression={"speed": (0.0, 20.0)},
                        player="p1")
    assert (result.num_windows, result.window_samples, result.gaps) == (29, 104, 0)
    assert result.ties == {"phase": 2} and result.warnings == () and result.first_missing is None
    ds = Dataset.open(tmp_path / "ds")
    belt = ds.spec.modality("belt")
    assert belt.channels == tuple(CHANNELS) and belt.sample_rate_hz == 52.0
    assert belt.units == ("g", "g", "g", "bpm", "degC")
    assert ds.spec.task("phase").labels == tuple(LABELS)
    x = ds.inputs["belt"]
    assert x.shape == (29, 5, 104)
    for k in (0, 13, 28):  # window k starts at second k
        np.testing.assert_array_equal(x[k], signal[k * 52: k * 52 + 104].T.astype(np.float32))
    # Majority label per window; at the 10 s and 22 s boundaries a 1 s / 1 s tie goes to the
    # label listed first in label_names.
    expected = []
    for k in range(29):
        a, b = LABELS.index(phase_of_second(k)), LABELS.index(phase_of_second(k + 1))
        expected.append(min(a, b))
    np.testing.assert_array_equal(ds.targets["phase"], expected)
    np.testing.assert_allclose(ds.targets["speed"], [(k * 0.5 + (k + 1) * 0.5) / 2
                                                     for k in range(29)], rtol=1e-6)
    assert set(ds.player) == {"p1"} and set(ds.session) == {"belt"}  # session: the file stem
    assert ds.spec.source["file"] == "belt.csv" and len(ds.spec.source["sha256"]) == 64
    assert ds.spec.preprocessing["resampled"] is False


def test_label_names_are_inferred_sorted_and_rate_from_time(tmp_path: Path) -> None:
    csv_path = tmp_path / "belt.csv"
    write_belt_csv(csv_path)
    result = import_csv(csv_path, tmp_path / "ds", channels=CHANNELS[:2], time_column="t",
                        window_seconds=2.0, hop_seconds=2.0, label_columns={"phase": "phase"},
                        player="p1", session="s9")
    assert result.sample_rate_hz == 52.0 and result.num_windows == 15
    assert result.labels == {"phase": ("jog", "stride", "walk")}
    ds = Dataset.open(tmp_path / "ds")
    assert ds.targets["phase"][0] == 2 and ds.targets["phase"][-1] == 1


def test_player_column_windows_each_player_separately(tmp_path: Path) -> None:
    csv_path = tmp_path / "hub.csv"
    signal = write_belt_csv(csv_path, players=("amira", "bo"))
    import_csv(csv_path, tmp_path / "ds", channels=CHANNELS, time_column="t", window_seconds=2.0,
               hop_seconds=1.0, label_columns={"phase": "phase"}, label_names={"phase": LABELS},
               player_column="player")
    ds = Dataset.open(tmp_path / "ds")
    assert ds.summary()["players"] == {"amira": 29, "bo": 29}
    bo = ds.subset(ds.player == "bo")
    np.testing.assert_array_equal(bo.inputs["imu"][3], signal[156:260].T.astype(np.float32))


def test_gap_splits_windows_and_empty_cells_drop_windows(tmp_path: Path) -> None:
    csv_path = tmp_path / "belt.csv"
    write_belt_csv(csv_path, blank_row=100)
    lines = csv_path.read_text().splitlines(keepends=True)
    del lines[1 + 520: 1 + 624]  # lose seconds 10-12: a 2 s dropout
    csv_path.write_text("".join(lines))
    result = import_csv(csv_path, tmp_path / "ds", channels=CHANNELS, time_column="t",
                        window_seconds=2.0, hop_seconds=1.0, player="p1")
    # Before the gap 10 s -> 9 windows, 2 of them hold row 100; after it 18 s -> 17 windows.
    assert (result.gaps, result.dropped_nan_windows, result.num_windows) == (1, 2, 24)
    assert result.sample_rate_hz == 52.0
    assert result.first_missing == (102, "az", "")  # data row 100 is file line 102


def test_errors_name_the_problem(tmp_path: Path) -> None:
    csv_path = tmp_path / "belt.csv"
    write_belt_csv(csv_path, bad_label_row=3)
    kw = dict(channels=CHANNELS, sample_rate_hz=52, window_seconds=2.0, hop_seconds=1.0,
              player="p1")
    with pytest.raises(DatasetError, match=re.escape(
            f"{csv_path}:5: label 'sprint' in column 'phase' is not in label_names['phase'] = "
            "['walk', 'jog', 'stride']. Add it or fix the cell")):
        import_csv(csv_path, tmp_path / "a", label_columns={"phase": "phase"},
                   label_names={"phase": LABELS}, **kw)
    with pytest.raises(DatasetError, match=re.escape(
            f"{csv_path}: no column(s) ['gz']; the header has ['t', 'player', 'ax'")):
        import_csv(csv_path, tmp_path / "b", **{**kw, "channels": ["ax", "gz"]})
    with pytest.raises(DatasetError, match="give exactly one of player"):
        import_csv(csv_path, tmp_path / "c", **{**kw, "player": None})
    with pytest.raises(DatasetError, match=re.escape(
            "column 't' says 52 Hz but sample_rate_hz=100. Check time_unit or the rate")):
        import_csv(csv_path, tmp_path / "d", time_column="t", **{**kw, "sample_rate_hz": 100})
    with pytest.raises(DatasetError, match=re.escape("no complete window of 40 s (2080 samples)")):
        import_csv(csv_path, tmp_path / "e", **{**kw, "window_seconds": 40.0})
    assert not any((tmp_path / d).exists() for d in "abcde")  # nothing half-written is left


def test_window_label_rules() -> None:
    labels = np.array([0, 0, 1, 1, -1, -1, 2, 2])
    # window 4, hop 2: [0,0,1,1] tie -> 0; [1,1,-1,-1] -> 1; [-1,-1,2,2] -> 2 (half labelled)
    np.testing.assert_array_equal(window_class_labels(labels, 3, 4, 2), [0, 1, 2])
    np.testing.assert_array_equal(window_class_labels(labels, 3, 4, 2, 0.75), [0, -1, -1])
    values = np.array([1.0, 3.0, np.nan, np.nan, np.nan, 5.0])
    out = window_regression(values, 3, 3)
    assert out[0] == 2.0 and np.isnan(out[1])


def test_docs_worked_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    text = DOC.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 5
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), ns)  # noqa: S102 - our own documentation
    printed = capsys.readouterr().out
    # The CSV head the page shows is what the generator writes.
    head = re.search(r"```text\n(time_ms,.*?)```", text, flags=re.S).group(1)
    assert Path("belt-2024-05-01.csv").read_text().startswith(head)
    # What the page says the import prints is what it prints.
    assert "207 52.0 1" in printed
    phase = ns["belt"].summary()["tasks"]["phase"]
    assert phase == {"kind": "class", "counts": {"warmup": 41, "drill": 118, "rest": 44},
                     "missing": 4}
    assert "Dataset(207 windows, imu[6, 208], hr[1, 4], tasks=['phase'], root=belt-dataset-2)" \
        in printed
    belt, belt2 = ns["belt"], ns["belt2"]
    # Both routes cut the same first window: the IMU channels of the belt stream.
    np.testing.assert_array_equal(belt2.inputs["imu"][0], belt.inputs["belt"][0, 1:])
    before_gap = 99
    np.testing.assert_array_equal(belt2.targets["phase"][:before_gap],
                                  belt.targets["phase"][:before_gap])
    assert len(Dataset.open("tiny")) == 4
    # The page's command line writes what its import_csv call wrote.
    import shlex

    from typer.testing import CliRunner

    from fusion_edge.cli.app import app

    shell = re.search(r"```bash\n(fusion-edge dataset import .*?)\n(fusion-edge dataset info .*?)\n", text, flags=re.S)
    for command in shell.groups():
        argv = shlex.split(command.replace("\\\n", " "), comments=True)
        res = CliRunner().invoke(app, argv[1:])
        assert res.exit_code == 0, res.output
    cli = Dataset.open("belt-dataset-cli")
    np.testing.assert_array_equal(cli.inputs["belt"], belt.inputs["belt"])
    np.testing.assert_array_equal(cli.targets["phase"], belt.targets["phase"])
    np.testing.assert_array_equal(cli.targets["effort"], belt.targets["effort"])
    # The page's last step: the squad dataset is what `fusion-edge train` accepts (three
    # players for the grouped split; 4 s at 52 Hz = 208 samples, which once failed to build).
    assert "621 {'amira': 207, 'ben': 207, 'chloe': 207}" in printed
    assert "fusion-edge train --data squad-dataset --out runs/belt" in text
    import torch

    from fusion_edge.toolkit.model import ModelConfig
    from fusion_edge.toolkit.train import TrainConfig, train_run

    # The step counts the page states ("How finely the model sees time").
    assert ModelConfig.for_dataset(Dataset.open("squad-dataset").spec).time_steps == 13
    assert ModelConfig.for_dataset(Dataset.open("belt-dataset-2").spec).time_steps == 2
    assert "gets 13 steps" in text and "gets only 2\nsteps" in text

    torch.set_num_threads(1)
    _, run = train_run("squad-dataset", "runs/belt", config=TrainConfig(epochs=1, device="cpu"),
                       show_progress=False)
    assert run is not None and (run / "model.safetensors").is_file()


def test_a_text_cell_in_a_signal_column_is_an_error_naming_its_line(tmp_path: Path) -> None:
    """It used to become a missing sample: the windows around a typo were dropped silently."""
    csv_path = tmp_path / "belt.csv"
    write_belt_csv(csv_path)
    lines = csv_path.read_text().splitlines(keepends=True)
    cells = lines[40].split(",")
    cells[3] = "9.81g"  # column 'ay', data row 40 (file line 41)
    lines[40] = ",".join(cells)
    quoted = lines.copy()
    cells[3] = '"9,81"'  # a decimal comma in a comma-separated file
    quoted[40] = ",".join(cells)
    kw = dict(channels=CHANNELS, sample_rate_hz=52, window_seconds=2.0, hop_seconds=1.0, player="p1")
    csv_path.write_text("".join(lines))
    with pytest.raises(DatasetError, match=re.escape(f"{csv_path}:41: '9.81g' in column 'ay' is not a number")):
        import_csv(csv_path, tmp_path / "a", **kw)
    csv_path.write_text("".join(quoted))
    with pytest.raises(DatasetError, match="'9,81' in column 'ay' is not a number; write decimals with a point"):
        import_csv(csv_path, tmp_path / "b", **kw)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_na_cells_are_missing_samples_like_empty_ones(tmp_path: Path) -> None:
    csv_path = tmp_path / "belt.csv"
    write_belt_csv(csv_path, blank_row=100)
    csv_path.write_text(csv_path.read_text().replace(",,", ",NA,", 1))
    result = import_csv(csv_path, tmp_path / "ds", channels=CHANNELS, sample_rate_hz=52,
                        window_seconds=2.0, hop_seconds=1.0, player="p1")
    assert (result.dropped_nan_windows, result.num_windows) == (2, 27)
    assert result.first_missing == (102, "az", "NA")


def test_the_first_missing_sample_is_named_by_line_and_column_and_what_it_holds(tmp_path: Path) -> None:
    """'2 window(s) with empty cells were left out' named neither the line nor that it was a NaN."""
    csv_path = tmp_path / "hub.csv"
    write_belt_csv(csv_path, players=("amira", "bo"))
    edit_cell(csv_path, 903, 3, "NaN")  # bo's row, column 'ay'
    edit_cell(csv_path, 1500, 2, "")  # amira's ('ax'), later in the file
    result = import_csv(csv_path, tmp_path / "ds", **{**KW, "player": None, "player_column": "player"})
    assert result.first_missing == (903, "ay", "NaN") and result.dropped_nan_windows == 4
    assert missing_cell(csv_path, *result.first_missing) == f"{csv_path}:903, column 'ay' holds 'NaN'"
    assert missing_cell(csv_path, 1500, "ax", "") == f"{csv_path}:1500, column 'ax' is empty"
    # With every window holding one, the error names the first.
    with pytest.raises(DatasetError, match=re.escape(
            "without a missing sample; all 2 windows hold an empty or NaN signal cell (first: "
            f"{csv_path}:903, column 'ay' holds 'NaN')")):
        import_csv(csv_path, tmp_path / "e", **{**KW, "player": None, "player_column": "player",
                                                "window_seconds": 30.0, "hop_seconds": 30.0})
    assert not (tmp_path / "e").exists()


def test_a_semicolon_csv_with_decimal_commas_reads_as_the_comma_one(tmp_path: Path) -> None:
    """Excel in locales with a decimal comma separates cells with ';'."""
    plain = tmp_path / "belt.csv"
    write_belt_csv(plain)
    text = plain.read_text()
    rows = [line.split(",") for line in text.splitlines()]
    europe = tmp_path / "belt-de.csv"
    europe.write_text("\n".join(";".join(cell.replace(".", ",") for cell in row) for row in rows) + "\n")
    assert "0,5" in europe.read_text()
    kw = dict(channels=CHANNELS, time_column="t", window_seconds=2.0, hop_seconds=1.0, player="p1",
              label_columns={"phase": "phase", "speed": "speed"}, label_names={"phase": LABELS},
              regression={"speed": (0.0, 20.0)})
    a = import_csv(plain, tmp_path / "a", **kw)
    b = import_csv(europe, tmp_path / "b", **kw)
    assert (a.num_windows, a.sample_rate_hz) == (b.num_windows, b.sample_rate_hz) == (29, 52.0)
    da, db = Dataset.open(tmp_path / "a"), Dataset.open(tmp_path / "b")
    np.testing.assert_array_equal(da.inputs["imu"], db.inputs["imu"])
    np.testing.assert_array_equal(da.targets["speed"], db.targets["speed"])


def edit_cell(path: Path, line: int, column: int, value: str) -> None:
    """Set one cell of a comma-separated file (``line`` 1 = the header)."""
    lines = path.read_text().splitlines(keepends=True)
    cells = lines[line - 1].rstrip("\n").split(",")
    cells[column] = value
    lines[line - 1] = ",".join(cells) + "\n"
    path.write_text("".join(lines))


KW = dict(channels=CHANNELS, sample_rate_hz=52, window_seconds=2.0, hop_seconds=1.0, player="p1")


def test_na_cells_in_a_class_column_are_no_label_not_a_class(tmp_path: Path) -> None:
    """R writes NA for a missing label: it used to become a class named 'NA'."""
    csv_path = tmp_path / "belt.csv"
    write_belt_csv(csv_path)
    for line in range(2, 2 + 3 * RATE):  # seconds 0-2 untagged, written as NA
        edit_cell(csv_path, line, 7, "NA")
    kw = dict(KW, label_columns={"phase": "phase"})
    with pytest.raises(DatasetError, match=re.escape(
            f"{csv_path}:2: 'NA' in class column 'phase' means no label only when label_names is given "
            "(--label-names phase=...): list the labels")):
        import_csv(csv_path, tmp_path / "a", **kw)
    assert not (tmp_path / "a").exists()
    result = import_csv(csv_path, tmp_path / "b", label_names={"phase": LABELS}, **kw)
    assert result.labels == {"phase": tuple(LABELS)}
    phase = Dataset.open(tmp_path / "b").targets["phase"]
    np.testing.assert_array_equal(phase[:3], [-1, -1, 0])  # windows at 0 s, 1 s untagged; 2 s half
    # Listed in label_names, the same text is a class.
    result = import_csv(csv_path, tmp_path / "c", label_names={"phase": [*LABELS, "NA"]}, **kw)
    assert Dataset.open(tmp_path / "c").targets["phase"][0] == 3


def test_an_empty_player_cell_is_an_error_naming_its_line(tmp_path: Path) -> None:
    """It used to make a player '' of one row and split the real player's recording there."""
    csv_path = tmp_path / "hub.csv"
    write_belt_csv(csv_path, players=("amira", "bo"))
    edit_cell(csv_path, 12, 1, "")
    with pytest.raises(DatasetError, match=re.escape(
            f"{csv_path}:12: the player cell (column 'player') is empty; fill it")):
        import_csv(csv_path, tmp_path / "ds", **{**KW, "player": None, "player_column": "player"})
    assert not (tmp_path / "ds").exists()


def test_a_row_with_more_cells_than_the_header_is_an_error(tmp_path: Path) -> None:
    """An unquoted decimal comma (9,81) shifts every later cell of its row one column right."""
    csv_path = tmp_path / "belt.csv"
    write_belt_csv(csv_path)
    edit_cell(csv_path, 30, 2, "9,81")
    with pytest.raises(DatasetError, match=re.escape(
            f"{csv_path}:30: row has 10 cells, the header has 9: a cell holds an unquoted ','")):
        import_csv(csv_path, tmp_path / "ds", **KW)
    # A trailing separator on every row (an empty last cell) is no problem.
    write_belt_csv(csv_path)
    header, *rows = csv_path.read_text().splitlines()
    csv_path.write_text(header + "\n" + "".join(row + ",\n" for row in rows))
    assert import_csv(csv_path, tmp_path / "ok", **KW).num_windows == 29


def test_a_column_named_twice_in_the_header_is_an_error(tmp_path: Path) -> None:
    csv_path = tmp_path / "belt.csv"
    write_belt_csv(csv_path)
    edit_cell(csv_path, 1, 3, "ax")  # 'ay' renamed 'ax': two 'ax' columns
    with pytest.raises(DatasetError, match=re.escape(
            f"{csv_path}: column 'ax' appears 2 times in the header (columns 3, 4); rename them")):
        import_csv(csv_path, tmp_path / "ds", **{**KW, "channels": ["ax"]})


def test_an_inf_cell_is_an_error_not_an_empty_cell(tmp_path: Path) -> None:
    csv_path = tmp_path / "belt.csv"
    write_belt_csv(csv_path)
    edit_cell(csv_path, 41, 3, "inf")
    with pytest.raises(DatasetError, match=re.escape(f"{csv_path}:41: 'inf' in column 'ay' is not a finite number")):
        import_csv(csv_path, tmp_path / "ds", **KW)


def test_time_going_backwards_names_the_line(tmp_path: Path) -> None:
    csv_path = tmp_path / "belt.csv"
    write_belt_csv(csv_path)
    edit_cell(csv_path, 101, 0, "0.5")
    with pytest.raises(DatasetError, match=re.escape(
            f"{csv_path}:101: column 't' goes from 1.884615 to 0.5 s (player 'p1'); the times must increase")):
        import_csv(csv_path, tmp_path / "ds", **{**KW, "sample_rate_hz": None, "time_column": "t"})


def test_a_file_not_in_utf8_is_an_error_saying_how_to_save_it(tmp_path: Path) -> None:
    """Excel on Windows saves 'CSV (semicolon)' in cp1252: it used to end in a UnicodeDecodeError."""
    csv_path = tmp_path / "belt.csv"
    write_belt_csv(csv_path)
    csv_path.write_bytes(csv_path.read_text().replace("stride", "récupération").encode("cp1252"))
    with pytest.raises(DatasetError, match=re.escape(f"{csv_path} is not UTF-8 text") + ".*save it as 'CSV UTF-8'"):
        import_csv(csv_path, tmp_path / "ds", **KW)
    assert not (tmp_path / "ds").exists()


def test_a_header_without_rows_says_so(tmp_path: Path) -> None:
    csv_path = tmp_path / "belt.csv"
    csv_path.write_text("t,ax\n")
    with pytest.raises(DatasetError, match=re.escape(f"{csv_path} has a header but no data rows")):
        import_csv(csv_path, tmp_path / "ds", channels=["ax"], time_column="t", window_seconds=2.0,
                   hop_seconds=1.0, player="p1")


def test_clock_times_in_the_time_column_say_what_the_column_must_hold(tmp_path: Path) -> None:
    csv_path = tmp_path / "belt.csv"
    write_belt_csv(csv_path)
    edit_cell(csv_path, 2, 0, "10:00:00.000")
    with pytest.raises(DatasetError, match=re.escape(
            f"{csv_path}:2: '10:00:00.000' in column 't' is not a number; the time column must hold "
            "numbers in s")):
        import_csv(csv_path, tmp_path / "ds", **{**KW, "sample_rate_hz": None, "time_column": "t"})


@pytest.mark.parametrize(("typo", "why"), [
    ("jogg", "looks like a typo of 'jog'"),
    ("Jog", "differs from 'jog' only in case"),
])
def test_an_inferred_label_that_looks_mistyped_is_refused_naming_its_line(tmp_path: Path, typo: str,
                                                                          why: str) -> None:
    """Without label_names a one-row typo became a class of its own, in no window: a dead class."""
    csv_path = tmp_path / "belt.csv"
    write_belt_csv(csv_path)
    edit_cell(csv_path, 702, 7, typo)  # data row 700, second 13: 'jog'
    edit_cell(csv_path, 900, 7, typo)
    kw = dict(KW, label_columns={"phase": "phase"})
    names = sorted(["jog", "stride", "walk", typo])
    with pytest.raises(DatasetError, match=re.escape(
            f"{csv_path}:702: label {typo!r} in column 'phase' {why} (it is on 2 row(s) and is the label "
            f"of 0 window(s); 'jog' is on 622 rows). With the label names taken from the column it would "
            f"be a class of its own. Fix the cells (to 'jog', or leave them empty), or, if {typo!r} is a "
            f"class, list the labels (--label-names phase={','.join(names)}; from Python, "
            f"label_names={{'phase': {names!r}}})")):
        import_csv(csv_path, tmp_path / "a", **kw)
    assert not (tmp_path / "a").exists()
    # Listed, it is a class: a rare legitimate label stays importable.
    result = import_csv(csv_path, tmp_path / "b", label_names={"phase": names}, **kw)
    assert result.labels == {"phase": tuple(names)} and result.warnings == ()


def test_labels_that_are_frequent_or_unlike_the_others_are_not_typos(tmp_path: Path) -> None:
    csv_path = tmp_path / "belt.csv"
    write_belt_csv(csv_path)
    for line in range(2, 2 + 5 * RATE):  # 'walks' on 5 s: like 'walk', but no rare typo
        edit_cell(csv_path, line, 7, "walks")
    edit_cell(csv_path, 1000, 7, "fall")  # one row, spelled like no other label
    result = import_csv(csv_path, tmp_path / "ds", label_columns={"phase": "phase"}, **KW)
    assert result.labels == {"phase": ("fall", "jog", "stride", "walk", "walks")}
    # ... but a label that is no window's label is a class training never sees: said.
    assert result.warnings == (
        f"label 'fall' of task 'phase' (1 row(s) in column 'phase', first at {csv_path}:1000) is the "
        "label of no 2 s window, so training gets a class without examples: relabel or empty those "
        "cells, or give a shorter window (--window, window_seconds)",)


@pytest.mark.parametrize(("given", "meant"), [("accx", "accX"), ("acc_x", "accX"), ("ACC-Y", "accY"),
                                              ("acc y", "accY"), ("acZ", "accZ")])
def test_a_column_name_in_another_case_or_spelling_suggests_the_right_column(tmp_path: Path, given: str,
                                                                            meant: str) -> None:
    """difflib alone said "Did you mean 'accZ' for 'accx'?"."""
    csv_path = tmp_path / "belt.csv"
    write_belt_csv(csv_path)
    header = csv_path.read_text().split("\n", 1)
    csv_path.write_text(header[0].replace("ax,ay,az", "accX,accY,accZ") + "\n" + header[1])
    with pytest.raises(DatasetError, match=re.escape(f"Did you mean {meant!r} for {given!r}? ")):
        import_csv(csv_path, tmp_path / "ds", **{**KW, "channels": [given]})


def test_a_utf16_file_is_read_as_utf16(tmp_path: Path) -> None:
    """Excel's "Unicode Text" is tab-separated UTF-16 LE with a BOM: it used to be refused as not
    UTF-8, with advice to convert it from cp1252."""
    plain = tmp_path / "belt.csv"
    write_belt_csv(plain)
    text = plain.read_text()
    unicode_text = tmp_path / "belt.txt"
    unicode_text.write_bytes(codecs.BOM_UTF16_LE + text.replace(",", "\t").encode("utf-16-le"))
    big_endian = tmp_path / "belt-be.csv"
    big_endian.write_bytes(codecs.BOM_UTF16_BE + text.encode("utf-16-be"))
    kw = dict(KW, label_columns={"phase": "phase"}, label_names={"phase": LABELS})
    a = import_csv(plain, tmp_path / "a", **kw)
    for i, path in enumerate((unicode_text, big_endian)):
        b = import_csv(path, tmp_path / f"b{i}", **kw)
        assert b.num_windows == a.num_windows == 29
        np.testing.assert_array_equal(Dataset.open(tmp_path / f"b{i}").inputs["imu"],
                                      Dataset.open(tmp_path / "a").inputs["imu"])
    # Without a byte-order mark, UTF-16 holds NUL bytes; read as UTF-8 it would be garbage.
    no_bom = tmp_path / "nobom.csv"
    no_bom.write_bytes(text.encode("utf-16-le"))
    with pytest.raises(DatasetError, match=re.escape(
            f"{no_bom} is not UTF-8 text: it holds NUL bytes") + ".*iconv -f utf-16le -t utf-8"):
        import_csv(no_bom, tmp_path / "c", **kw)


def test_a_numeric_class_column_says_how_to_give_it_on_the_command_line_and_from_python(tmp_path: Path) -> None:
    """The message used to end in '(--regression speed=speed:LOW:HIGH, regression=)'."""
    csv_path = tmp_path / "belt.csv"
    write_belt_csv(csv_path)
    with pytest.raises(DatasetError) as exc:
        import_csv(csv_path, tmp_path / "ds", label_columns={"speed": "speed"}, **KW)
    assert ("give it as a regression task (--regression speed:LOW:HIGH; from Python, "
            "regression={'speed': (LOW, HIGH)}); if the numbers are class codes, list them as its labels "
            "(--label-names speed=NAME,NAME,...; from Python, label_names={'speed': [...]})") in str(exc.value)
    assert "regression=)" not in str(exc.value) and "label_names=)" not in str(exc.value)
    with pytest.raises(DatasetError, match=re.escape(
            "Give the scale's range (--regression speed:LOW:HIGH; from Python, "
            "regression={'speed': (LOW, HIGH)}) or fix the cells")):
        import_csv(csv_path, tmp_path / "ds", label_columns={"speed": "speed"},
                   regression={"speed": (0.0, 5.0)}, **KW)
