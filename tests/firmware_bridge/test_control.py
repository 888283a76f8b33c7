"""Control commands and responses: golden vectors, round trips, status codes, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fusion_edge.errors import ProtocolError
from fusion_edge.firmware_bridge import control as ctl
from fusion_edge.firmware_bridge.protocol import (
    BadCrcError,
    MalformedPacketError,
    SensorMask,
    TruncatedPacketError,
    UnknownVersionError,
)
from fusion_edge.firmware_bridge.wire_layout import append_crc

VECTORS = Path(__file__).resolve().parents[1] / "data" / "firmware_bridge" / "pod_vectors.json"
_GOLDEN = json.loads(VECTORS.read_text())
ERRORS = {
    "bad_crc": BadCrcError,
    "truncated": TruncatedPacketError,
    "unknown_version": UnknownVersionError,
    "malformed": MalformedPacketError,
    "unknown_command": ctl.UnknownCommandError,
    "bad_argument": ctl.BadArgumentError,
}
COMMANDS = _GOLDEN["commands"]
RESPONSES = _GOLDEN["responses"]


@pytest.mark.parametrize("vec", COMMANDS, ids=[v["name"] for v in COMMANDS])
def test_golden_commands(vec: dict[str, Any]) -> None:
    raw = bytes.fromhex(vec["hex"])
    if vec["expect"] != "ok":
        with pytest.raises(ERRORS[vec["expect"]]):
            ctl.decode_command(raw)
        return
    cmd = ctl.decode_command(raw)
    assert cmd.OPCODE.name == vec["opcode"]
    assert {k: int(v) for k, v in vars(cmd).items()} == vec["fields"]
    assert ctl.encode_command(cmd) == raw
    assert len(raw) <= 20  # fits one write at the default ATT MTU 23


@pytest.mark.parametrize("vec", RESPONSES, ids=[v["name"] for v in RESPONSES])
def test_golden_responses(vec: dict[str, Any]) -> None:
    raw = bytes.fromhex(vec["hex"])
    if vec["expect"] != "ok":
        with pytest.raises(ERRORS[vec["expect"]]):
            ctl.decode_response(raw)
        return
    resp = ctl.decode_response(raw)
    f = vec["fields"]
    assert (int(resp.opcode), int(resp.status), resp.token) == (
        f["opcode"],
        f["status"],
        f["token"],
    )
    if isinstance(resp, ctl.InfoResponse):
        assert resp.battery_v == f["battery_v"] and resp.boot_id == f["boot_id"]
        assert resp.sensors == SensorMask(f["sensors"]) and resp.streaming is True
    assert ctl.encode_response(resp) == raw
    assert len(raw) <= 20


def test_info_response_fields_and_round_trip() -> None:
    info = ctl.InfoResponse(2, 0, 13, 1, 77, SensorMask.ACCEL, 3, 0, 1, 3.7004, 255, False, token=9)
    back = ctl.decode_response(ctl.encode_response(info))
    assert back == info
    assert isinstance(back, ctl.InfoResponse)
    assert back.firmware_version == "2.0.13"
    assert back.battery_v == 3.7  # 1 mV resolution on the wire
    assert back.sample_rate_hz == 200.0 and back.ok and back.status is ctl.StatusCode.OK


def test_non_ok_info_has_no_payload() -> None:
    busy = ctl.CommandResponse(ctl.Opcode.INFO, ctl.StatusCode.BUSY, token=3)
    raw = ctl.encode_response(busy)
    assert len(raw) == 6
    back = ctl.decode_response(raw)
    assert back == busy and not back.ok


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (append_crc(b"\x01\x44\x00"), ctl.StatusCode.UNKNOWN_COMMAND),
        (append_crc(b"\x01\x04\x00\x01\x07"), ctl.StatusCode.BAD_ARGUMENT),
        (append_crc(b"\x02\x01\x00"), ctl.StatusCode.UNSUPPORTED_VERSION),
        (b"\x01\x01\x00\x00\x00", ctl.StatusCode.BAD_CRC),
        (append_crc(b"\x01\x03\x00"), ctl.StatusCode.BAD_LENGTH),
        (append_crc(b"\x01\x01\x00\x00"), ctl.StatusCode.BAD_LENGTH),
    ],
)
def test_status_for_decode_errors(raw: bytes, status: ctl.StatusCode) -> None:
    with pytest.raises(ProtocolError) as info:
        ctl.decode_command(raw)
    assert ctl.status_for_error(info.value) is status


def test_unknown_command_and_bad_argument_carry_opcode_and_token() -> None:
    with pytest.raises(ctl.UnknownCommandError) as unk:
        ctl.decode_command(append_crc(b"\x01\x44\x2a"))
    assert (unk.value.opcode, unk.value.token) == (0x44, 42)
    assert str(unk.value) == (
        "control command: opcode 0x44 is unknown (known: 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, "
        "0x07); answer UNKNOWN_COMMAND, or update the side that does not know it"
    )
    with pytest.raises(ctl.BadArgumentError) as bad:
        ctl.decode_command(append_crc(b"\x01\x03\x2b\x09"))
    assert (bad.value.opcode, bad.value.token) == (3, 43)
    assert str(bad.value) == (
        "control command 0x03: rate code 9 is unknown; answer BAD_ARGUMENT, and send a value "
        "from the code tables in PROTOCOL.md"
    )


def test_commands_validate_on_construction() -> None:
    with pytest.raises(ValueError, match=r"rate code 4 is unknown; use one of \[0, 1, 2, 3\]"):
        ctl.SetRateCommand(rate_code=4)
    with pytest.raises(ValueError, match="gyro range code 9 is unknown"):
        ctl.SetRangeCommand(0, 9)
    with pytest.raises(ValueError, match="sensor mask 0 is invalid"):
        ctl.SetSensorsCommand(SensorMask(0))
    with pytest.raises(ValueError, match="time_us=-1 does not fit u64"):
        ctl.SetTimeCommand(-1)
    with pytest.raises(ValueError, match="token"):
        ctl.encode_command(ctl.StartCommand(token=256))
    with pytest.raises(ValueError, match="is not a control command"):
        ctl.encode_command("START")  # type: ignore[arg-type]


def test_every_opcode_round_trips_and_has_a_layout() -> None:
    cmds = [
        ctl.StartCommand(1),
        ctl.StopCommand(2),
        ctl.SetRateCommand(0, 3),
        ctl.SetRangeCommand(3, 0, 4),
        ctl.SetTimeCommand((1 << 64) - 1, 5),
        ctl.InfoCommand(6),
        ctl.SetSensorsCommand(SensorMask.MAG, 7),
    ]
    assert {c.OPCODE for c in cmds} == set(ctl.Opcode) == set(ctl.COMMAND_LAYOUTS)
    for cmd in cmds:
        assert ctl.decode_command(ctl.encode_command(cmd)) == cmd
        if cmd.OPCODE is ctl.Opcode.INFO:
            with pytest.raises(ValueError, match="send an InfoResponse"):
                ctl.encode_response(ctl.CommandResponse(cmd.OPCODE, ctl.StatusCode.OK))
            continue
        resp = ctl.CommandResponse(cmd.OPCODE, ctl.StatusCode.OK, cmd.token)
        assert ctl.decode_response(ctl.encode_response(resp)) == resp
