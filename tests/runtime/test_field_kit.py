"""The field kit's processor under faults: every test breaks one thing and checks that the other
players keep being scored, that the kit says what happened, and that it counted it.

The kit here is :class:`offline_kit.OfflineKit`: simulated pods and receivers on a fake clock
feeding the real FieldProcessor (the live transports are covered by tests/cli/test_run_cli.py).
Hop is the bundle's (3 s) and the window 6 s, so the first window ends about 6.2 s in.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from offline_kit import OfflineKit

from fusion_edge.errors import BundleError
from fusion_edge.runtime.bundle_model import BundleModel
from fusion_edge.runtime.events import EventStatus
from fusion_edge.runtime.field_kit import FieldProcessor, check_bundle_inputs
from fusion_edge.runtime.risk import DailyLoadHistory
from fusion_edge.runtime.simulated_kit import fault_counts


def scored(events: list[Any]) -> list[Any]:
    return [e for e in events if e.status is EventStatus.SCORED]


@pytest.fixture(scope="module")
def model(kit_bundle: Path) -> BundleModel:
    m = BundleModel(kit_bundle, preference=["onnxruntime-cpu"])
    yield m
    m.close()


# ---------------------------------------------------------------- one session, four faults

@pytest.fixture(scope="module")
def faulty(model: BundleModel) -> OfflineKit:
    """Six players, three GNSS ports. At 7 s pod 0 goes silent (link lost) until 11 s; at 8 s
    pod 1 reboots (new boot id, clock from zero); at 8 s pod 2's clock is set 20 s back inside
    its boot; at 7 s receiver 2 (players 4 and 5) is unplugged until 11 s. Player 3 is clean and
    has an ACWR history."""
    today = dt.date(2024, 6, 1)
    days = {today - dt.timedelta(days=d): 40.0 for d in range(1, 28)}
    kit = OfflineKit(model, players=6, per_port=2, history={}, today=today)
    kit.processor.history[kit.player_ids[3]] = DailyLoadHistory(kit.player_ids[3], days)

    def clock_back() -> None:
        # The pod's clock (and so its packet timestamps) steps 20 s back inside one boot, the
        # way a bad SET_TIME or a firmware RTC glitch does; sampling itself goes on.
        pod = kit.pods[2]
        pod._clock_offset_us -= 20_000_000  # noqa: SLF001 - the simulator has no glitch API
        pod._stream_start_us -= 20_000_000  # noqa: SLF001

    def reboot() -> None:
        kit.pods[1].reboot(kit.now)
        kit.pods[1].start(kit.now)  # the transport reconnects and sends START again

    kit.run(24.0, at={
        7.0: lambda: (kit.silent.add(0), kit.unplugged.add(2)),
        8.0: lambda: (reboot(), clock_back()),
        11.0: lambda: (kit.silent.discard(0), kit.unplugged.discard(2)),
    })
    kit.finish()
    return kit


def test_clean_player_is_scored_at_every_hop(faulty: OfflineKit) -> None:
    evs = faulty.events_of(3)
    ends = [e.window_end_ns for e in evs]
    hop_ns = int(round(faulty.processor.model.manifest["inputs"][0]["hop_seconds"] * 1e9))
    assert len(evs) >= 6 and all(e.status is EventStatus.SCORED for e in evs)
    assert all(b - a == hop_ns for a, b in zip(ends, ends[1:], strict=False))


def test_pod_disconnect_is_reported_counted_and_recovers(faulty: OfflineKit) -> None:
    evs = faulty.events_of(0)
    reasons = {e.status_reason for e in evs if e.status is EventStatus.NOT_SCORED}
    assert reasons and reasons <= {"stale_pod", "insufficient_imu", "long_gap"}
    # The 4 s outage arrives as a sequence gap: counted as lost samples (about 400 at 100 Hz).
    assert 350 <= faulty.processor.readers[faulty.setups[0].pod].counters.lost_samples <= 450
    # Scored again once a whole window after the reconnect is in.
    assert scored(faulty.events_of(0, after_s=17.5))
    # Others were served while it was away.
    assert all(e.status is EventStatus.SCORED for e in faulty.events_of(3, after_s=7))


def test_receiver_unplugged_marks_its_players_and_recovers(faulty: OfflineKit) -> None:
    for player in (4, 5):
        during = [e for e in faulty.events_of(player, after_s=7) if e.window_end_ns < faulty.T0 + 12.5e9]
        assert during, "a hop inside the outage must exist"
        # 4 s of GNSS lost > 3 s allowed: the window is not scored, and the event says why.
        assert any(e.status_reason == "no_gnss" for e in during)
        assert scored(faulty.events_of(player, after_s=18))
    assert faulty.processor.stats.not_scored.get("no_gnss", 0) >= 2


def test_pod_reboot_clock_restart_windows_continue(faulty: OfflineKit) -> None:
    counters = faulty.processor.readers[faulty.setups[1].pod].counters
    assert counters.reboots == 1
    assert scored(faulty.events_of(1, after_s=14))
    assert fault_counts(faulty.processor)["pod_reboots"] == 1


def test_device_clock_jump_back_restarts_mapping(faulty: OfflineKit) -> None:
    assert faulty.processor.stats.clock_resets == 1
    assert faulty.processor.stats.pod_errors == 0
    after = faulty.events_of(2, after_s=14)
    assert after and all(e.status is EventStatus.SCORED for e in after)
    # Window ends stay on the one hop grid for everybody.
    assert [e.window_end_ns for e in after] == [e.window_end_ns for e in faulty.events_of(3, after_s=14)]


def test_risk_band_from_history_and_running_load(faulty: OfflineKit) -> None:
    with_history = faulty.events_of(3)
    assert all(e.risk is not None for e in with_history)
    last = with_history[-1].risk
    # 27 days at 40 plus today's running PlayerLoad: acute and chronic means include today.
    assert last.chronic_days == 28
    assert last.band.value in ("low", "medium", "high")
    assert json.loads(with_history[-1].to_json())["risk_band"] == last.band.value
    assert all(e.risk is None for e in faulty.events_of(0))


# ---------------------------------------------------------------- backends

class _Flaky:
    """Wraps a real backend; after ``ok_calls`` calls it raises, or hangs for ``hang_s``."""

    def __init__(self, inner: Any, ok_calls: int, hang_s: float | None = None) -> None:
        self.inner, self.ok_calls, self.hang_s = inner, ok_calls, hang_s
        self.name, self.precision, self.calls = inner.name, inner.precision, 0

    def run(self, inputs: Any) -> Any:
        import time

        self.calls += 1
        if self.calls > self.ok_calls:
            if self.hang_s is not None:
                time.sleep(self.hang_s)
            else:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.inner.run(inputs)

    def close(self) -> None:
        self.inner.close()


def _chain_with_flaky_first(kit_bundle: Path, hang_s: float | None) -> BundleModel:
    from fusion_edge.runtime.backends import BackendKind, BackendSpec, open_backend
    from fusion_edge.runtime.fallback import BackendChain

    m = BundleModel(kit_bundle, preference=["onnxruntime-cpu"], escalation=False)
    int8 = m.chain.active_spec
    fp32 = BackendSpec(BackendKind.ONNXRUNTIME_CPU, kit_bundle / "model_fp32.onnx", "fp32")

    def opener(spec: BackendSpec) -> Any:
        b = open_backend(spec)
        return _Flaky(b, ok_calls=1, hang_s=hang_s) if spec is int8 else b

    m.chain.close()
    m.chain = BackendChain([int8, fp32], opener=opener, timeout_s=0.3)
    return m


@pytest.mark.parametrize("hang_s", [None, 1.0], ids=["crash", "hang"])
def test_backend_crash_or_hang_falls_through(kit_bundle: Path, hang_s: float | None) -> None:
    m = _chain_with_flaky_first(kit_bundle, hang_s)
    kit = OfflineKit(m, players=3)
    kit.run(13.0)
    kit.finish()
    evs = kit.processor.events
    hop = m.manifest["inputs"][0]["hop_seconds"]
    hops = int(round((12.2 - 6.2) / hop)) + 1  # windows end at 6.2 s ... 12.2 s
    assert len({e.window_end_ns for e in evs}) == hops  # no hop lost
    assert len(evs) == 3 * hops
    assert all(e.status is EventStatus.SCORED for e in evs)
    assert [e.backend for e in evs[:3]] == ["onnxruntime-cpu/int8"] * 3
    assert {e.backend for e in evs[3:]} == {"onnxruntime-cpu/fp32"}
    c = m.chain.counters
    assert len(c.switches) == 1 and (c.timeouts if hang_s else c.runtime_errors) == 1
    assert ("hung" if hang_s else "illegal memory access") in c.switches[0].reason
    faults = fault_counts(kit.processor)
    assert faults["backend_switches"] == 1


def test_every_backend_failing_gives_not_scored_events(kit_bundle: Path) -> None:
    from fusion_edge.runtime.fallback import BackendChain

    m = BundleModel(kit_bundle, preference=["onnxruntime-cpu"], escalation=False)
    spec = m.chain.active_spec
    m.chain.close()
    m.chain = BackendChain([spec], opener=lambda s: _Flaky(__import__(
        "fusion_edge.runtime.backends", fromlist=["open_backend"]).open_backend(s), ok_calls=0))
    kit = OfflineKit(m, players=2)
    kit.run(10.0)
    kit.finish()
    evs = kit.processor.events
    assert evs and all(e.status is EventStatus.NOT_SCORED for e in evs)
    assert all(e.status_reason.startswith("no backend answered") for e in evs)
    assert kit.processor.stats.backend_failures >= 1


# ---------------------------------------------------------------- bundles

def test_corrupt_bundle_names_the_file(kit_bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bundle"
    shutil.copytree(kit_bundle, bad)
    f = bad / "model_fp32.onnx"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model_fp32\.onnx.*corrupt, copy the bundle again"):
        BundleModel(bad, preference=["onnxruntime-cpu"])


def test_bundle_for_other_sensors_is_refused(model: BundleModel) -> None:
    manifest = json.loads(json.dumps(model.manifest))
    manifest["inputs"][0]["channels"] = ["ax", "ay", "az", "gx", "gy", "gz", "hr", "spo2", "temp"]
    with pytest.raises(BundleError, match=r"input 'imu' has channels .*'hr'.* the kit's sensors give"):
        check_bundle_inputs(manifest, "b")
    manifest["inputs"] = manifest["inputs"][:1]
    with pytest.raises(BundleError, match="no 'position' input"):
        check_bundle_inputs(json.loads(json.dumps({"inputs": [model.manifest["inputs"][0]]})), "b")


def test_processor_refuses_mismatched_bundle(model: BundleModel, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = json.loads(json.dumps(model.manifest))
    manifest["inputs"][1]["channels"] = ["x", "y", "speed"]
    monkeypatch.setattr(model, "manifest", manifest)
    with pytest.raises(BundleError, match="position"):
        FieldProcessor([], model)


# ---------------------------------------------------------------- recording

class _FullDisk:
    """A recorder that stores the first ``room`` records in a real SessionRecorder, then fails
    like a full disk (OSError ENOSPC) on every write."""

    def __init__(self, inner: Any, room: int) -> None:
        self.inner, self.room, self.stored = inner, room, 0

    def _write(self, fn: Any, *args: Any) -> bool:
        if self.stored >= self.room:
            raise OSError(28, "No space left on device")
        self.stored += 1
        return fn(*args)

    def record_packet(self, *a: Any) -> bool:
        return self._write(self.inner.record_packet, *a)

    def record_gnss(self, *a: Any) -> bool:
        return self._write(self.inner.record_gnss, *a)

    def record_event(self, *a: Any) -> bool:
        return self._write(self.inner.record_event, *a)


def test_full_disk_keeps_scoring_and_keeps_what_was_stored(model: BundleModel, tmp_path: Path) -> None:
    from fusion_edge.runtime.recording import SessionReader, SessionRecorder

    path = tmp_path / "rec.sqlite"
    with SessionRecorder(path, {"test": "full disk"}) as rec:
        disk = _FullDisk(rec, room=200)
        kit = OfflineKit(model, players=3, recorder=disk)
        kit.run(10.0)
        kit.finish()
    st = kit.processor.stats
    assert st.recording_errors > 50 and "No space left" in st.last_recording_error
    assert fault_counts(kit.processor)["recording_errors"] == st.recording_errors
    # Every player kept being scored.
    assert {e.player for e in scored(kit.processor.events)} == set(kit.player_ids)
    with SessionReader(path) as reader:
        assert reader.count("packet") + reader.count("gnss") + reader.count("event") == 200


# ---------------------------------------------------------------- the real transports

def test_live_kit_survives_pod_disconnect_and_receiver_unplug(
    model: BundleModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bumble pods through bleak and ptys through pyserial: a pod drops its BLE link and a
    receiver is unplugged for 4 s; both come back by themselves, and the rest is served."""
    import asyncio

    from fusion_edge.firmware_bridge.sim_pod import Fault
    from fusion_edge.runtime import simulated_kit
    from fusion_edge.runtime.simulated_kit import SimulatedKitConfig, run_simulated_kit

    monkeypatch.setattr(simulated_kit, "PLAYERS_PER_PORT", 2)  # 4 players on 2 ports
    seen: dict[str, Any] = {}

    async def script(kit: Any) -> None:
        seen["kit"] = kit
        await asyncio.sleep(2.0)
        kit.pods[0].inject(Fault.DISCONNECT)
        kit.receivers[1].unplug()
        await asyncio.sleep(4.0)
        kit.receivers[1].replug()

    processor, summary = asyncio.run(run_simulated_kit(
        SimulatedKitConfig(scenario="5v5", players=4, seconds=14.0), model, faults=script))
    kit = seen["kit"]
    ids = list(processor.players)
    by_player = {pid: [e for e in processor.events if e.player == pid] for pid in ids}
    # Player 1 (same port as the pod that dropped, other pod) is scored at every hop.
    assert len(by_player[ids[1]]) >= 2 and all(e.status is EventStatus.SCORED for e in by_player[ids[1]])
    # The pod's link came back on its own and its outage was counted as lost samples.
    assert kit.ble.counters(kit.pods[0].address).reconnects >= 1
    assert summary.lost_samples > 0 and summary.faults["lost_samples"] == summary.lost_samples
    assert by_player[ids[0]][-1].status is EventStatus.SCORED
    # The unplugged port's players were told why, then scored again after the replug.
    assert kit.gnss[1].counters.reconnects >= 1
    for pid in ids[2:]:
        assert any(e.status_reason == "no_gnss" for e in by_player[pid])
        assert by_player[pid][-1].status is EventStatus.SCORED


@pytest.mark.parametrize(
    "edit,where",
    [
        (lambda m: m["inputs"][1].update(window_samples=50), "inputs differ"),
        (lambda m: m["tasks"][0].update(labels=m["tasks"][0]["labels"][:5]), "tasks differ"),
        (lambda m: m["normalization"]["imu"]["mean"].__setitem__(0, 0.0), "normalization differ"),
    ],
)
def test_a_manifest_edited_after_export_is_refused_at_verify(
    kit_bundle: Path, tmp_path: Path, edit, where: str
) -> None:
    """Its hashes cover the model files, not the manifest: an edited window length verified ok
    and then failed every hop; shortened labels ended in tracebacks."""
    from fusion_edge.runtime.bundle import verify_bundle

    bad = tmp_path / "b"
    shutil.copytree(kit_bundle, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    edit(manifest)
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=f"its {where} from what model_fp32.onnx was exported with"):
        verify_bundle(bad)
    with pytest.raises(BundleError, match="the manifest was edited or belongs to another export"):
        BundleModel(bad, preference=["onnxruntime-cpu"])


def test_a_simulated_kit_whose_setup_fails_leaves_no_gnss_pty_folder(
    model: BundleModel, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A recording that would not open left /tmp/fusion-edge-gnss-*/rx0 -> /dev/pts/N behind."""
    import asyncio
    import tempfile

    from fusion_edge.runtime.simulated_kit import SimulatedKitConfig, run_simulated_kit

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    class Unopenable:
        def bind(self, _meta: Any) -> None:
            raise BundleError("cannot open the session recording")

    with pytest.raises(BundleError, match="cannot open the session recording"):
        asyncio.run(run_simulated_kit(SimulatedKitConfig(scenario="5v5", seconds=5, players=2), model,
                                      recorder=Unopenable()))
    assert not list(tmp_path.glob("fusion-edge-gnss-*"))
