"""`fusion-edge run` / `replay` / `profile compare` with an operator's mistakes: clear errors, no
tracebacks, and nothing good lost (the last session's events file, an unused recording).

The bundle is replaced by a stand-in where the command must stop before it is used, so these
tests need no trained model.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from fusion_edge.cli.app import app
from fusion_edge.errors import TransportError

runner = CliRunner()

# /dev/null: a character device that exists everywhere, so the kit passes the port check that
# runs before the bundle loads, and these tests reach the check they are about.
KIT = """name = "t"
[pitch]
lat = 51.556
lon = -0.2796

[gnss_ports.rx1]
path = "/dev/null"

[[players]]
id = "p01"
team = "home"
pod = "C0:FE:00:00:00:01"
gnss_port = "rx1"
"""


def invoke(*args: Any):
    r = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    r.text = " ".join(r.output.split())  # the error console wraps long lines
    return r


class _FakeModel:
    """Enough of a BundleModel for `run` to print its banner."""

    def __init__(self, *a: Any, **k: Any) -> None:
        self.chain = SimpleNamespace(name="onnxruntime-cpu", active=SimpleNamespace(precision="int8"))
        self.escalator = SimpleNamespace(full=None)
        self.threshold = 0.6
        self.manifest = {"inputs": [{"name": "imu", "window_samples": 240, "sample_rate_hz": 40.0}]}

    def close(self) -> None:
        pass


@pytest.fixture()
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import fusion_edge.runtime.bundle_model as bm

    monkeypatch.setattr(bm, "BundleModel", _FakeModel)


def test_error_text_in_brackets_reaches_the_operator(tmp_path: Path) -> None:
    """Rich markup used to eat '[gnss_ports.rx9]' ('add a  table with path and baud')."""
    kit = tmp_path / "kit.toml"
    kit.write_text(KIT.replace('gnss_port = "rx1"', 'gnss_port = "rx9"'))
    r = invoke("run", "--kit", kit, "--bundle", tmp_path / "no-bundle")
    assert r.exit_code == 2, r.output
    assert "add a [gnss_ports.rx9] table" in r.text
    assert "Traceback" not in r.text


def test_pod_only_player_is_refused_first_and_events_are_kept(tmp_path: Path) -> None:
    kit = tmp_path / "kit.toml"
    kit.write_text(KIT.replace('gnss_port = "rx1"\n', "") + '[sinks]\njsonl = "events.jsonl"\n')
    events = tmp_path / "events.jsonl"
    events.write_text('{"last": "session"}\n')
    r = invoke("run", "--kit", kit, "--bundle", tmp_path / "no-bundle", "--no-table")
    assert r.exit_code == 2, r.output
    assert "kit.toml:9: players[0]: player 'p01' has no gnss_port" in r.text
    assert events.read_text() == '{"last": "session"}\n'


@pytest.mark.parametrize("option", ["--stats", "--events", "--record"])
def test_output_path_that_is_a_folder_is_refused_before_the_session(tmp_path: Path, option: str) -> None:
    """--stats DIR used to raise IsADirectoryError after the whole session."""
    r = invoke("run", "--simulate", "5v5", "--seconds", 1, "--bundle", tmp_path / "no-bundle",
               option, tmp_path)
    assert r.exit_code == 2, r.output
    assert f"{option} {tmp_path} is a folder" in r.text


def test_startup_failure_keeps_the_last_events_file(tmp_path: Path, fake_model: None) -> None:
    """A typo in the scenario used to empty the previous session's events file."""
    events = tmp_path / "events.jsonl"
    events.write_text('{"last": "session"}\n')
    r = invoke("run", "--simulate", "5v55", "--seconds", 1, "--bundle", tmp_path, "--no-table",
               "--events", events)
    assert r.exit_code == 2, r.output
    assert "unknown scenario '5v55'" in r.text
    assert events.read_text() == '{"last": "session"}\n'


def test_kit_sinks_are_honoured_and_an_unused_recording_is_removed(
    tmp_path: Path, fake_model: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[sinks] terminal = false and [sinks.sse] used to be ignored by `run`; a session that
    never started left an empty recording behind."""
    import fusion_edge.cli.run_commands as rc
    import fusion_edge.runtime.kit_runner as kr

    seen: dict[str, Any] = {}
    real_sinks = rc._sinks

    def spy(stack, events, table, sse, sse_host="127.0.0.1"):
        seen.update(table=table, sse=sse, host=sse_host)
        return real_sinks(stack, events, table, None, sse_host)  # no server in a test

    async def no_adapter(*a: Any, **k: Any):
        raise TransportError("Bluetooth is not available")

    monkeypatch.setattr(rc, "_sinks", spy)
    monkeypatch.setattr(kr, "run_kit", no_adapter)
    kit = tmp_path / "kit.toml"
    kit.write_text(KIT + '[sinks]\nterminal = false\n[sinks.sse]\nhost = "0.0.0.0"\nport = 8799\n'
                         '[recording]\npath = "rec"\n')
    r = invoke("run", "--kit", kit, "--bundle", tmp_path)
    assert r.exit_code == 2, r.output
    assert "Bluetooth is not available" in r.text
    assert seen == {"table": False, "sse": 8799, "host": "0.0.0.0"}
    assert list((tmp_path / "rec").iterdir()) == []

    # A recording file given to append to is never removed.
    keep = tmp_path / "keep.sqlite"
    from fusion_edge.runtime.recording import SessionRecorder

    with SessionRecorder(keep, {"earlier": True}) as rec:
        rec.record_packet("pod", 1, b"\x01")
    r = invoke("run", "--kit", kit, "--bundle", tmp_path, "--record", keep)
    assert r.exit_code == 2 and keep.is_file(), r.output


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/dev/ttyNOPE9", "kit.toml:7: gnss_ports.rx1.path: /dev/ttyNOPE9 does not exist: plug in "
                          "and power the receiver of gnss_ports.rx1 (player p01)"),
        ("{tmp}", "is a folder, not a serial port"),
        ("{tmp}/kit.toml", "is a regular file, not a serial port"),
    ],
)
def test_unplugged_gnss_port_is_refused_before_the_bundle_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, says: str
) -> None:
    """An unplugged receiver used to be found only after the bundle had loaded (minutes on a
    TensorRT kit), and its error named the device, not the kit file's port or players."""
    import fusion_edge.runtime.bundle_model as bm

    def no_load(*a: Any, **k: Any) -> None:
        raise AssertionError("the bundle was loaded before the port check")

    monkeypatch.setattr(bm, "BundleModel", no_load)
    kit = tmp_path / "kit.toml"
    kit.write_text(KIT.replace("/dev/null", path.format(tmp=tmp_path)))
    r = invoke("run", "--kit", kit, "--bundle", tmp_path, "--no-table")
    assert r.exit_code == 2, r.output
    assert says in r.text and "Traceback" not in r.output


def test_gnss_open_failure_names_the_kit_port_and_players(tmp_path: Path) -> None:
    """A port that exists but will not open (here /dev/null: no serial settings) is reported
    with the kit file's port table and its players, not only the device path."""
    import asyncio

    import fusion_edge.runtime.kit_runner as kr
    from fusion_edge.firmware_bridge.serial_gnss import SerialGnssTransport
    from fusion_edge.runtime.kit import load_kit

    kit_path = tmp_path / "kit.toml"
    kit_path.write_text(KIT)
    kit = load_kit(kit_path)

    def refuse(self: SerialGnssTransport) -> SerialGnssTransport:
        raise TransportError(f"GNSS receiver on {self.port!r} could not be opened")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SerialGnssTransport, "start", refuse)
        mp.setattr(kr, "FieldProcessor", lambda *a, **k: SimpleNamespace())
        with pytest.raises(TransportError) as info:
            asyncio.run(kr.run_kit(kit, _FakeModel(), seconds=1))  # type: ignore[arg-type]
    assert str(info.value).startswith(f"{kit_path.resolve()}: gnss_ports.rx1 (player p01): GNSS "
                                      "receiver on '/dev/null' could not be opened")


@pytest.mark.parametrize(
    ("windows", "says"),
    [
        ("window_s = 4.0", "kit.toml:16: windows.window_s: window 4 s, but this bundle's model takes 6 s windows"),
        ("hop_s = 8.0", "kit.toml:16: windows.hop_s: hop 8 s is longer than this bundle's 6 s window"),
    ],
)
def test_kit_window_that_disagrees_with_the_bundle_is_refused(
    tmp_path: Path, fake_model: None, windows: str, says: str
) -> None:
    """[windows] window_s used to be accepted and silently ignored."""
    kit = tmp_path / "kit.toml"
    kit.write_text(KIT + f"\n[windows]\n{windows}\n")
    r = invoke("run", "--kit", kit, "--bundle", tmp_path, "--no-table")
    assert r.exit_code == 2, r.output
    assert says in r.text


def test_profile_compare_of_a_binary_file_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "report.json"
    bad.write_bytes(b"\xff\xfe\x00\x01")
    r = invoke("profile", "compare", bad, bad)
    assert r.exit_code == 2, r.output
    assert "is not JSON" in r.text


def _sqlite(path: Path) -> bytes:
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("create table t (x)")
    db.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    "options,message",
    [
        (("--events", "same.x", "--record", "same.x"), "--events and --record name the same file"),
        (("--record", "rs.sqlite", "--stats", "rs.sqlite"), "--stats and --record name the same file"),
        (("--events", "e.json", "--stats", "e.json"), "--events and --stats name the same file"),
    ],
)
def test_two_outputs_on_one_file_are_refused_before_the_session(
    tmp_path: Path, fake_model: None, options: tuple[str, ...], message: str
) -> None:
    """`--events same.x --record same.x` used to turn the raw recording into events, exit 0."""
    args = [str(tmp_path / o) if i % 2 else o for i, o in enumerate(options)]
    r = invoke("run", "--simulate", "5v5", "--bundle", tmp_path / "b", "--seconds", "5", *args)
    assert r.exit_code == 2, r.output
    assert message in r.text and "Traceback" not in r.output


@pytest.mark.parametrize("option", ["--events", "--stats"])
def test_events_or_stats_over_a_recording_are_refused_and_it_is_kept(
    tmp_path: Path, fake_model: None, option: str
) -> None:
    old = tmp_path / "keep.sqlite"
    before = _sqlite(old)
    r = invoke("run", "--simulate", "5v5", "--bundle", tmp_path / "b", "--seconds", "5", option, old)
    assert r.exit_code == 2, r.output
    assert "is a SQLite file (a recording?); writing there would replace it" in r.text
    assert old.read_bytes() == before


def test_record_over_an_events_file_is_refused_and_it_is_kept(tmp_path: Path, fake_model: None) -> None:
    old = tmp_path / "oldev.jsonl"
    old.write_text('{"player": "p1"}\n')
    r = invoke("run", "--simulate", "5v5", "--bundle", tmp_path / "b", "--seconds", "5", "--record", old)
    assert r.exit_code == 2, r.output
    assert "exists and is not a session recording" in r.text
    assert old.read_text() == '{"player": "p1"}\n'


def test_seconds_zero_is_refused_not_read_as_the_default(tmp_path: Path, fake_model: None) -> None:
    """`--seconds 0` ran the default 30 s (`seconds or 30.0`)."""
    r = invoke("run", "--simulate", "5v5", "--bundle", tmp_path / "b", "--seconds", "0")
    assert r.exit_code == 2, r.output
    assert "--seconds must be positive, got 0" in r.text


def test_output_writes_that_fail_after_the_checks_are_said_not_tracebacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As root on /sys the checks pass and the writes fail: mkdir and the events file used to
    end in PermissionError tracebacks that lost the session's table and stats."""
    from fusion_edge.cli.run_commands import _make_folder, _session_done
    from fusion_edge.errors import ConfigError

    def refuse(*_a: Any, **_k: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(ConfigError, match="--record: cannot create the folder .* \\(Permission denied\\)"):
        _make_folder(tmp_path / "recs", "--record")
    _session_done(SimpleNamespace(session_done=refuse), tmp_path / "ev.jsonl")  # no raise
    err = " ".join(capsys.readouterr().err.split())
    assert "could not write the events file" in err and "the session's table and stats follow" in err


def test_record_into_another_programs_database_is_refused_before_the_session(tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "club.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE contacts (name TEXT)")
    con.commit()
    con.close()
    before = other.read_bytes()
    r = invoke("run", "--simulate", "5v5", "--seconds", 1, "--bundle", tmp_path / "no-bundle",
               "--record", other)
    assert r.exit_code == 2, r.output
    assert "is a SQLite file of another program" in r.text and "Traceback" not in r.output
    assert other.read_bytes() == before
