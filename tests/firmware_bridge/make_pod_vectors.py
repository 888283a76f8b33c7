"""Regenerate tests/data/firmware_bridge/pod_vectors.json (the golden vectors).

Run only when the protocol changes on purpose (and bump its version):
    .venv/bin/python tests/firmware_bridge/make_pod_vectors.py

The good frames come from the Python codec; the C program in c/check_vectors.c decodes and
re-encodes them independently, and test_protocol.py rebuilds one with plain struct.pack, so a
codec bug cannot silently make its own golden data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fusion_edge.firmware_bridge import control as ctl
from fusion_edge.firmware_bridge.protocol import PodPacket, SensorMask, encode_packet
from fusion_edge.firmware_bridge.wire_layout import append_crc

OUT = Path(__file__).resolve().parents[1] / "data" / "firmware_bridge" / "pod_vectors.json"
A, G, M = SensorMask.ACCEL, SensorMask.GYRO, SensorMask.MAG


def _packet(name: str, rng: np.random.Generator, **kw: Any) -> tuple[dict[str, Any], bytes]:
    n = kw.pop("n")
    sensors = kw["sensors"]
    samples = kw.pop("samples", None)
    if samples is None:
        samples = rng.integers(-32768, 32768, size=(n, 3 * bin(int(sensors)).count("1")))
    p = PodPacket(version=1, **kw, samples=np.asarray(samples, dtype=np.int16))
    raw = encode_packet(p)
    vec = {
        "name": name,
        "expect": "ok",
        "hex": raw.hex(),
        "fields": p.header_fields(),
        "samples": p.samples.tolist(),
    }
    return vec, raw


def _bad(name: str, expect: str, raw: bytes) -> dict[str, Any]:
    return {"name": name, "expect": expect, "hex": raw.hex()}


def _flip(raw: bytes, index: int, mask: int = 0x01) -> bytes:
    b = bytearray(raw)
    b[index] ^= mask
    return bytes(b)


def packets() -> list[dict[str, Any]]:
    rng = np.random.default_rng(20240601)
    out = []
    v1, accel_1 = _packet(
        "accel_1_sample",
        rng,
        boot_id=1,
        seq=0,
        t0_us=0,
        rate_code=0,
        accel_range=0,
        gyro_range=0,
        sensors=A,
        n=1,
        samples=[[0, -1, 16384]],
    )
    v2, nine_1 = _packet(
        "nine_axis_1_sample_mtu41",
        rng,
        boot_id=0x1234,
        seq=1,
        t0_us=10_000,
        rate_code=2,
        accel_range=1,
        gyro_range=1,
        sensors=A | G | M,
        n=1,
    )
    v3, _ = _packet(
        "accel_gyro_18_samples_mtu247_seq_65535",
        rng,
        boot_id=0xBEEF,
        seq=65535,
        t0_us=5_000_000_123,
        rate_code=2,
        accel_range=2,
        gyro_range=3,
        sensors=A | G,
        n=18,
    )
    extremes = np.tile(np.array([-32768, 32767, 0, -1, 1, 256, -256, 32767, -32768]), (12, 1))
    v4, nine_12 = _packet(
        "nine_axis_12_samples_mtu247_extremes",
        rng,
        boot_id=0xFFFF,
        seq=12345,
        t0_us=(1 << 64) - 1,
        rate_code=3,
        accel_range=3,
        gyro_range=3,
        sensors=A | G | M,
        n=12,
        samples=extremes,
    )
    v5, _ = _packet(
        "gyro_mag_5_samples",
        rng,
        boot_id=7,
        seq=300,
        t0_us=123_456_789,
        rate_code=1,
        accel_range=0,
        gyro_range=2,
        sensors=G | M,
        n=5,
    )
    v6, _ = _packet(
        "accel_255_samples_max",
        rng,
        boot_id=2,
        seq=42,
        t0_us=987_654_321_000,
        rate_code=3,
        accel_range=1,
        gyro_range=0,
        sensors=A,
        n=255,
    )
    out += [v1, v2, v3, v4, v5, v6]
    out.append(_bad("bad_crc_sample_byte", "bad_crc", _flip(nine_12, 40)))
    out.append(_bad("bad_crc_crc_byte", "bad_crc", _flip(nine_1, len(nine_1) - 1, 0x80)))
    out.append(_bad("corrupted_count_byte_reads_truncated", "truncated", _flip(nine_1, 6, 0x02)))
    out.append(_bad("truncated_tail", "truncated", nine_12[:-7]))
    out.append(_bad("truncated_header", "truncated", nine_12[:10]))
    out.append(_bad("empty", "truncated", b""))
    out.append(_bad("unknown_version_2", "unknown_version", append_crc(b"\x02" + nine_1[1:-2])))
    out.append(_bad("corrupted_version_byte", "bad_crc", _flip(nine_1, 0, 0x02)))
    bad_rate = bytearray(accel_1[:-2])
    bad_rate[7] = 9
    out.append(_bad("malformed_rate_code_9", "malformed", append_crc(bytes(bad_rate))))
    out.append(_bad("malformed_trailing_byte", "malformed", append_crc(accel_1[:-2] + b"\x00")))
    zero = bytearray(accel_1[:-2])
    zero[1] = 0  # sensors 0 -> 0 channels, so the declared length matches with 6 bytes dropped
    out.append(_bad("malformed_no_sensors", "malformed", append_crc(bytes(zero[:18]))))
    return out


def _command_vec(name: str, cmd: Any) -> dict[str, Any]:
    fields = {k: int(v) for k, v in vars(cmd).items()}
    return {
        "name": name,
        "expect": "ok",
        "hex": ctl.encode_command(cmd).hex(),
        "opcode": cmd.OPCODE.name,
        "fields": fields,
    }


def commands() -> list[dict[str, Any]]:
    out = [
        _command_vec("start", ctl.StartCommand(token=1)),
        _command_vec("stop", ctl.StopCommand(token=2)),
        _command_vec("set_rate_100hz", ctl.SetRateCommand(rate_code=2, token=3)),
        _command_vec("set_range_8g_1000dps", ctl.SetRangeCommand(2, 2, token=4)),
        _command_vec("set_time", ctl.SetTimeCommand(time_us=1_717_171_717_171_717, token=5)),
        _command_vec("info", ctl.InfoCommand(token=6)),
        _command_vec("set_sensors_accel_gyro", ctl.SetSensorsCommand(A | G, token=7)),
    ]
    set_rate = ctl.encode_command(ctl.SetRateCommand(rate_code=1, token=9))
    out.append(_bad("unknown_opcode_0x44", "unknown_command", append_crc(b"\x01\x44\x0a")))
    out.append(_bad("set_rate_code_9", "bad_argument", append_crc(b"\x01\x03\x0b\x09")))
    out.append(_bad("set_sensors_zero", "bad_argument", append_crc(b"\x01\x07\x0c\x00")))
    out.append(_bad("set_rate_bad_crc", "bad_crc", _flip(set_rate, 3)))
    out.append(_bad("control_version_2", "unknown_version", append_crc(b"\x02" + set_rate[1:-2])))
    out.append(_bad("set_time_truncated", "truncated", append_crc(b"\x01\x05\x0d\x00\x01")))
    return out


def _response_vec(name: str, resp: Any) -> dict[str, Any]:
    if isinstance(resp, ctl.InfoResponse):
        fields = {k: v for k, v in vars(resp).items()}
        fields["sensors"] = int(resp.sensors)
        fields["streaming"] = int(resp.streaming)
        fields.update(opcode=int(resp.opcode), status=int(resp.status))
    else:
        fields = {"opcode": int(resp.opcode), "status": int(resp.status), "token": resp.token}
    return {"name": name, "expect": "ok", "hex": ctl.encode_response(resp).hex(), "fields": fields}


def responses() -> list[dict[str, Any]]:
    info = ctl.InfoResponse(
        fw_major=1,
        fw_minor=4,
        fw_patch=2,
        packet_version=1,
        boot_id=0xBEEF,
        sensors=A | G | M,
        rate_code=2,
        accel_range=1,
        gyro_range=2,
        battery_v=3.912,
        battery_pct=87,
        streaming=True,
        token=6,
    )
    S = ctl.StatusCode
    out = [
        _response_vec("start_ok", ctl.CommandResponse(ctl.Opcode.START, S.OK, token=1)),
        _response_vec(
            "set_rate_bad_argument",
            ctl.CommandResponse(ctl.Opcode.SET_RATE, S.BAD_ARGUMENT, token=11),
        ),
        _response_vec(
            "start_mtu_too_small", ctl.CommandResponse(ctl.Opcode.START, S.MTU_TOO_SMALL, token=1)
        ),
        _response_vec("unknown_command", ctl.CommandResponse(0x44, S.UNKNOWN_COMMAND, token=10)),
        _response_vec("info_busy", ctl.CommandResponse(ctl.Opcode.INFO, S.BUSY, token=6)),
        _response_vec("info_ok", info),
    ]
    info_raw = ctl.encode_response(info)
    out.append(_bad("info_truncated", "truncated", info_raw[:-4]))
    out.append(_bad("info_bad_crc", "bad_crc", _flip(info_raw, 9)))
    out.append(_bad("missing_response_flag", "malformed", append_crc(b"\x01\x01\x01\x00")))
    out.append(_bad("unknown_status_77", "malformed", append_crc(b"\x01\x81\x01\x4d")))
    return out


def main() -> None:
    doc = {
        "format": "fusion-edge pod protocol golden vectors",
        "packet_version": 1,
        "control_version": 1,
        "crc": {"algorithm": "CRC-16/CCITT-FALSE", "ascii": "123456789", "value": 0x29B1},
        "expect_values": [
            "ok",
            "bad_crc",
            "truncated",
            "unknown_version",
            "malformed",
            "unknown_command",
            "bad_argument",
        ],
        "packets": packets(),
        "commands": commands(),
        "responses": responses(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
