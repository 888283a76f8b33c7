"""Kit files: the example loads, and every bad kit is reported with its line, key and a fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fusion_edge.errors import ConfigError
from fusion_edge.runtime.kit import BackendName, KitError, TomlLocator, load_kit

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
name = "test kit"

[gnss_ports.rx1]
path = "/dev/ttyACM0"
baud = 115200

[[players]]
id = "p01"
name = "One"
team = "home"
pod = "c0:fe:00:00:00:01"
gnss_port = "rx1"
gnss_tag = "P01"

[[players]]
id = "p02"
name = "Two"
pod = "C0:FE:00:00:00:02"
gnss_port = "rx1"
gnss_tag = "P02"

[[players]]
id = "p03"
gnss_port = "rx1"

[sinks]
jsonl = "events.jsonl"
terminal = false
sse = { host = "0.0.0.0", port = 8080 }

[backend]
preference = [
  "tensorrt",
  "onnxruntime-cpu",
]

[escalation]
threshold = 0.55
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kit.toml"
    path.write_text(text)
    return path


def test_example_kit_loads() -> None:
    kit = load_kit(REPO / "examples" / "kit.toml")
    assert [p.id for p in kit.players] == ["p01", "p02", "p03", "p04"]
    assert kit.backends == (BackendName.TENSORRT, BackendName.ONNXRUNTIME_CUDA,
                            BackendName.ONNXRUNTIME_CPU)
    assert kit.player("p04").gnss_port == "rx2" and kit.sinks.sse is not None


def test_example_kit_is_runnable() -> None:
    """`fusion-edge run --kit examples/kit.toml` gets past the kit (it used to refuse p04, which
    had no GNSS port, only after loading the bundle and wiping the events file)."""
    from fusion_edge.runtime.kit_runner import setups_from_kit

    setups = setups_from_kit(load_kit(REPO / "examples" / "kit.toml"))
    assert [s.player_id for s in setups] == ["p01", "p02", "p03", "p04"]


def test_player_without_gnss_is_refused_at_its_line(tmp_path: Path) -> None:
    from fusion_edge.runtime.kit_runner import setups_from_kit

    path = write(tmp_path, 'name = "x"\n\n[[players]]\nid = "a"\npod = "C0:FE:00:00:00:01"\n')
    with pytest.raises(KitError, match=r"kit.toml:3: players\[0\]: player 'a' has no gnss_port") as info:
        setups_from_kit(load_kit(path))
    assert info.value.line == 3


@pytest.mark.parametrize("content", [b"\xff\xfe\x00binary", None])
def test_unreadable_kit_file_is_a_kit_error(tmp_path: Path, content: bytes | None) -> None:
    """A binary file or a folder given as --kit: a KitError, not a traceback."""
    if content is None:
        path = tmp_path / "kits"
        path.mkdir()
        match = "is a folder"
    else:
        path = tmp_path / "kit.toml"
        path.write_bytes(content)
        match = "is not a text file"
    with pytest.raises(KitError, match=match):
        load_kit(path)


def test_good_kit_values_and_defaults(tmp_path: Path) -> None:
    kit = load_kit(write(tmp_path, GOOD))
    assert kit.name == "test kit"
    assert kit.player("p01").pod == "C0:FE:00:00:00:01"  # normalised to upper case
    assert kit.gnss_port("rx1").baud == 115200
    assert kit.sinks.jsonl == tmp_path / "events.jsonl" and kit.sinks.terminal is False
    assert (kit.sinks.sse.host, kit.sinks.sse.port) == ("0.0.0.0", 8080)
    assert kit.escalation.threshold == 0.55 and kit.escalation.enabled
    assert kit.escalation.backend is None  # chosen by the kit's backends (full_model_specs)
    assert kit.recording.enabled and kit.recording.path == tmp_path / "recordings"
    assert kit.windows.hop_s is None and kit.load.metric == "player_load"


def test_calibration_path_is_relative_to_the_kit(tmp_path: Path) -> None:
    (tmp_path / "cal").mkdir()
    (tmp_path / "cal" / "p01.json").write_text("{}")
    text = GOOD.replace('gnss_tag = "P01"\n', 'gnss_tag = "P01"\ncalibration = "cal/p01.json"\n')
    assert load_kit(write(tmp_path, text)).player("p01").calibration == tmp_path / "cal/p01.json"


BAD_CASES = [
    # (replace this, with this, expected line, key, message fragment)
    ('pod = "C0:FE:00:00:00:02"', 'pod = "C0:FE:00:00:00:01"', 18, "players[1].pod",
     "also given to players[0]"),
    ('pod = "C0:FE:00:00:00:02"', 'pod = "C0:FE:00:00:02"', 18, "players[1].pod",
     "is not a BLE address"),
    ('pod = "C0:FE:00:00:00:02"', 'pod = "C0-FE-00-00-00-02"', 18, "players[1].pod",
     "write it with colons, 'C0:FE:00:00:00:02'"),
    ('team = "home"', 'taem = "home"', 10, "players[0].taem", "did you mean 'team'?"),
    ("[escalation]\nthreshold", "[escalation]\nthreshhold", 38, "escalation.threshhold",
     "did you mean 'threshold'?"),
    ('id = "p03"\ngnss_port = "rx1"\n', 'id = "p03"\n', 22, "players[2]", "has no sensor"),
    ('id = "p03"\ngnss_port = "rx1"', 'id = "p03"\ngnss_port = "rx9"', 24,
     "players[2].gnss_port", "port 'rx9' is not declared"),
    ('id = "p03"\ngnss_port = "rx1"', 'id = "p03"\ngnss_port = "/dev/ttyACM0"', 24,
     "players[2].gnss_port", "is rx1's path, so write gnss_port = \"rx1\""),
    ('id = "p03"\ngnss_port = "rx1"', 'id = "p03"\ngnss_port = "/dev/ttyUSB7"', 24,
     "players[2].gnss_port", "declare e.g. [gnss_ports.rx9] with path = \"/dev/ttyUSB7\""),
    ('"tensorrt",', '"tensorrtt",', 33, "backend.preference[0]",
     "unknown backend 'tensorrtt'; did you mean 'tensorrt'?"),
    ('gnss_tag = "P02"', 'gnss_tag = "P01"', 20, "players[1].gnss_tag",
     "same port 'rx1' with TAG source 'P01'"),
    ('id = "p02"', 'id = "p01"', 16, "players[1].id", "already used by players[0]"),
    ("baud = 115200", "baud = 115201", 5, "gnss_ports.rx1.baud", "not a standard baud rate"),
    ("baud = 115200\n", 'baud = 115200\n\n[gnss_ports.rx2]\npath = "/dev/ttyACM0"\n', 8,
     "gnss_ports.rx2.path", "'/dev/ttyACM0' is also gnss_ports.rx1's path"),
    ("threshold = 0.55", "threshold = 1.5", 38, "escalation.threshold", "between 0 and 1"),
    ("threshold = 0.55", 'threshold = 0.55\nbackend = "tensorrt"', 39, "escalation.backend",
     "'tensorrt' cannot run the full-precision model"),
    ('sse = { host = "0.0.0.0", port = 8080 }', 'sse = { host = "0.0.0.0", port = 70000 }', 29,
     "sinks.sse.port", "not a TCP port"),
    ('team = "home"', 'team = 3', 10, "players[0].team", "must be a str, got int"),
]


@pytest.mark.parametrize(("old", "new", "line", "key", "message"), BAD_CASES,
                         ids=[c[4][:30] for c in BAD_CASES])
def test_bad_kit_names_the_line(tmp_path: Path, old: str, new: str, line: int, key: str,
                                message: str) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(KitError) as info:
        load_kit(path)
    err = info.value
    assert (err.line, err.key) == (line, key), str(err)
    assert message in str(err)
    assert str(err).startswith(f"{path.resolve()}:{line}: {key}: ")


def test_missing_calibration_file_names_its_line(tmp_path: Path) -> None:
    text = GOOD.replace('id = "p02"\n', 'id = "p02"\ncalibration = "cal/p02.json"\n')
    with pytest.raises(KitError, match=r"kit\.toml:17: players\[1\]\.calibration: calibration "
                                       r"file .*cal/p02\.json does not exist; fix the path"):
        load_kit(write(tmp_path, text))


def test_syntax_error_keeps_tomllib_line(tmp_path: Path) -> None:
    with pytest.raises(KitError) as info:
        load_kit(write(tmp_path, GOOD.replace('name = "Two"', 'name = "Two')))
    assert info.value.line == 17 and "not valid TOML" in str(info.value)


def test_missing_kit_and_no_players(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="copy examples/kit.toml"):
        load_kit(tmp_path / "nope.toml")
    with pytest.raises(KitError, match="no players"):
        load_kit(write(tmp_path, 'name = "empty"\n'))
    with pytest.raises(KitError, match="unknown key; did you mean 'players'"):
        load_kit(write(tmp_path, GOOD.replace("[[players]]", "[[player]]", 1)))


def test_locator_handles_arrays_of_tables_and_multiline_values() -> None:
    loc = TomlLocator(GOOD)
    assert loc.line_of(("players", 0)) == 7
    assert loc.line_of(("players", 2, "gnss_port")) == 24
    assert loc.line_of(("backend", "preference")) == 32
    assert loc.line_of(("backend", "preference", 1)) == 34  # one element per line
    assert loc.line_of(("escalation", "threshold")) == 38
    assert loc.line_of(("sinks", "sse", "host")) == 29  # inline table -> its key's line
    assert loc.line_of(("nothing",)) is None


PITCH = """
[pitch]
lat = 48.2
lon = 16.4
bearing_deg = 30.0
attacks_plus_x = "away"
"""


def test_pitch_table_sets_origin_and_attacking_team(tmp_path: Path) -> None:
    from fusion_edge.runtime.field_kit import pitch_xy
    from fusion_edge.runtime.kit_runner import pitch_origin

    text = GOOD.replace('id = "p02"\nname = "Two"', 'id = "p02"\nname = "Two"\nteam = "away"') + PITCH
    kit = load_kit(write(tmp_path, text))
    assert kit.pitch is not None and kit.pitch.attacks_plus_x == "away"
    origin = pitch_origin(kit)
    assert (origin.lat_deg, origin.lon_deg, origin.x_bearing_deg) == (48.2, 16.4, 30.0)
    # 10 m along +x (bearing 30 deg) from the centre maps back to (10, 0).
    lat, lon = origin.to_lat_lon(10.0, 0.0)
    x, y = pitch_xy(origin, lat, lon)
    assert x == pytest.approx(10.0, abs=1e-3) and y == pytest.approx(0.0, abs=1e-3)


def test_pitch_attacking_team_gets_plus_x(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fusion_edge.runtime import kit_runner

    text = GOOD.replace('id = "p02"\nname = "Two"', 'id = "p02"\nname = "Two"\nteam = "away"') + PITCH
    text = text.replace('[[players]]\nid = "p03"\ngnss_port = "rx1"\n', "")
    kit = load_kit(write(tmp_path, text))
    monkeypatch.setattr("fusion_edge.calibration.load_calibration", lambda p: None)
    setups = {s.player_id: s for s in kit_runner.setups_from_kit(kit)}
    assert setups["p02"].attack_dir == 1.0 and setups["p02"].team == 0
    assert setups["p01"].attack_dir == -1.0 and setups["p01"].team == 1


@pytest.mark.parametrize(("new", "key", "words"), [
    ("lat = 95.0", "pitch.lat", "not a latitude"),
    ("bearing_deg = 400", "pitch.bearing_deg", "0..360"),
    ('attacks_plus_x = "reds"', "pitch.attacks_plus_x", "no player's team"),
])
def test_bad_pitch_names_the_line(tmp_path: Path, new: str, key: str, words: str) -> None:
    base = GOOD + "\n[pitch]\nlat = 48.2\nlon = 16.4\n"
    field_name = new.split(" ")[0]
    text = base.replace(f"{field_name} = 48.2", new) if field_name == "lat" else base + new + "\n"
    with pytest.raises(KitError) as err:
        load_kit(write(tmp_path, text))
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith(new.split(" ")[0] + " ="))
    assert err.value.line == line and err.value.key == key and words in str(err.value)


def test_processor_options_from_kit_history_pitch_and_hop(tmp_path: Path) -> None:
    import json

    from fusion_edge.runtime.kit_runner import processor_options

    (tmp_path / "squad.json").write_text(json.dumps({"players": [
        {"player": "p01", "days": [{"date": "2024-05-31", "load": 300.0}]}]}))
    text = GOOD + PITCH.replace('attacks_plus_x = "away"\n', "") + (
        '\n[windows]\nhop_s = 1.5\n\n[load]\nhistory = "squad.json"\nmetric = "distance_m"\n')
    kit = load_kit(write(tmp_path, text))
    opts = processor_options(kit)
    assert set(opts["history"]) == {"p01"} and opts["load_metric"] == "distance_m"
    assert opts["config"].hop_s == 1.5
    assert opts["origin"].x_bearing_deg == 30.0


def _calibration(folder: Path, pod_id: str) -> Path:
    import numpy as np

    from fusion_edge.calibration.imu import ImuCalibration, save_calibration

    cal = ImuCalibration(pod_id, np.zeros(3), np.eye(3), np.zeros(3))
    return save_calibration(cal, folder / "")


def test_a_calibration_is_checked_against_the_pod_it_is_worn_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another pod's calibration file used to be taken without a word (pods swapped between
    vests ran with each other's corrections); a calibration folder was called missing."""
    from fusion_edge.runtime.kit_runner import setups_from_kit

    cal = tmp_path / "cal"
    cal.mkdir()
    other = _calibration(cal, "C0:FE:00:00:00:09")
    own = _calibration(cal, "C0:FE:00:00:00:01")
    named = _calibration(cal, "pod7")  # calibrated from a CSV without --pod-id
    base = GOOD.replace('[[players]]\nid = "p03"\ngnss_port = "rx1"\n', "")

    def kit_with(calibration: str) -> Any:
        text = base.replace('gnss_tag = "P01"\n', f'gnss_tag = "P01"\ncalibration = "{calibration}"\n')
        return load_kit(write(tmp_path, text))

    with pytest.raises(KitError) as err:
        setups_from_kit(kit_with(f"cal/{other.name}"))
    assert (err.value.line, err.value.key) == (14, "players[0].calibration")
    assert "is the calibration of pod C0:FE:00:00:00:09, but player 'p01' wears pod" in str(err.value)
    by_file = {s.player_id: s for s in setups_from_kit(kit_with(f"cal/{own.name}"))}
    by_folder = {s.player_id: s for s in setups_from_kit(kit_with("cal/"))}
    assert by_file["p01"].calibration.pod_id == by_folder["p01"].calibration.pod_id == "C0:FE:00:00:00:01"
    with caplog.at_level("WARNING"):
        assert setups_from_kit(kit_with(f"cal/{named.name}"))[0].calibration.pod_id == "pod7"
    assert "cannot be checked against pod C0:FE:00:00:00:01; recalibrate with --pod-id" in caplog.text
    (cal / own.name).unlink()
    with pytest.raises(KitError, match=r"kit\.toml:14: players\[0\]\.calibration: no calibration of "
                                       r"pod C0:FE:00:00:00:01 in"):
        setups_from_kit(kit_with("cal"))
