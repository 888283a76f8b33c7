"""Sinks: the hub never blocks, JSON lines on disk, the terminal table, and SSE over real HTTP."""

from __future__ import annotations

import http.client
import io
import json
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from fusion_edge.runtime.events import FeedbackEvent
from fusion_edge.runtime.load import LoadMetrics
from fusion_edge.runtime.sinks import ESCALATED_LEGEND, JsonLinesSink, SinkHub, SseSink, TerminalTableSink


def event(i: int, player: str = "p01") -> FeedbackEvent:
    return FeedbackEvent(
        player=player,
        window_end_ns=i * 1_000_000_000,
        predictions={"action": {"label": "running", "probability": 0.8,
                                "probabilities": {"running": 0.8, "passing": 0.2}},
                     "tactic": {"label": "pressing", "probability": 0.7,
                                "probabilities": {"pressing": 0.7, "retreating": 0.3}}},
        backend="onnxruntime-cpu",
        quality=0.9,
        load=LoadMetrics(distance_m=100.0 + i, hsr_m=12.0, sprints=1, accelerations=3,
                         decelerations=2, player_load=4.5),
        stage_latency_ms={"inference": 2.0},
    )


class SlowSink:
    name = "slow"

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received = 0
        self.closed = False

    def handle(self, events: Sequence[FeedbackEvent]) -> None:
        time.sleep(self.delay)
        self.received += len(events)

    def close(self) -> None:
        self.closed = True


class FailingSink:
    name = "failing"

    def handle(self, events: Sequence[FeedbackEvent]) -> None:
        raise OSError("disk full")

    def close(self) -> None:
        pass


def test_slow_sink_never_blocks_publish_and_drops_are_counted() -> None:
    slow = SlowSink(0.2)
    hub = SinkHub([slow], queue_size=100, batch_size=10)
    events = [event(i) for i in range(10_000)]
    start = time.perf_counter()
    for ev in events:
        hub.publish(ev)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0  # 10,000 publishes against a sink that needs 0.2 s per batch of 10
    s = hub.stats()["slow"]
    assert s.dropped >= 10_000 - 100 - 10  # at most one batch in hand plus a full queue kept
    assert s.queued <= 100
    final = hub.close(timeout=5.0, drain=False)["slow"]
    assert final.delivered + final.dropped == 10_000
    assert slow.closed and slow.received == final.delivered


def test_failing_sink_is_counted_and_others_still_receive() -> None:
    good = SlowSink(0.0)
    good.name = "good"
    with SinkHub([FailingSink(), good]) as hub:
        hub.publish_many([event(i) for i in range(5)])
    stats = hub.stats()
    assert stats["failing"].errors >= 1 and "disk full" in (stats["failing"].last_error or "")
    assert good.received == 5 and stats["good"].delivered == 5


def test_duplicate_sink_names_are_refused() -> None:
    hub = SinkHub([SlowSink(0.0)])
    with pytest.raises(Exception, match="distinct name"):
        hub.add(SlowSink(0.0))
    hub.close()


def test_jsonl_sink_appends_one_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.jsonl"
    sink = JsonLinesSink(path)
    hub = SinkHub([sink], batch_size=3)
    for i in range(10):
        hub.publish(event(i))
    hub.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line)["window_end_ns"] for line in lines] == [i * 10**9 for i in range(10)]
    assert sink.fsyncs <= 2  # at most once a second, plus the final one at close
    again = JsonLinesSink(path)  # a second session appends
    again.handle([event(99)])
    again.close()
    assert len(path.read_text().splitlines()) == 11
    assert FeedbackEvent.from_json(path.read_text().splitlines()[-1]) == event(99)


def test_terminal_sink_without_a_tty_prints_only_the_final_table() -> None:
    out = io.StringIO()
    sink = TerminalTableSink(Console(file=out, force_terminal=False, width=220))
    sink.handle([event(1, "p01"), event(2, "p02")])
    sink.handle([event(3, "p01")])
    assert out.getvalue() == ""
    sink.close()
    text = out.getvalue()
    assert "p01" in text and "p02" in text and "running (0.80)" in text and "pressing" in text
    assert "103" in text  # p01's latest distance, not the first one


def test_terminal_table_explains_the_escalation_mark_only_when_a_row_carries_it() -> None:
    sink = TerminalTableSink(Console(file=io.StringIO(), force_terminal=False, width=220))
    sink.handle([event(1, "p01")])
    plain = Console(file=io.StringIO(), width=220)
    plain.print(sink.table())
    assert "^" not in plain.file.getvalue()
    sink.handle([replace(event(2, "p02"), escalated=True, escalation_reason="action confidence 0.41 < 0.60",
                         backend="torch-cuda")])
    marked = Console(file=io.StringIO(), width=220)
    marked.print(sink.table())
    text = marked.file.getvalue()
    assert "torch-cuda ^" in text and ESCALATED_LEGEND in text


def test_terminal_sink_on_a_tty_redraws_at_most_four_times_a_second() -> None:
    out = io.StringIO()
    sink = TerminalTableSink(Console(file=out, force_terminal=True, width=220))
    start = time.monotonic()
    for i in range(200):
        sink.handle([event(i)])
    sink.close()
    elapsed = time.monotonic() - start
    assert sink.redraws <= 2 + int(elapsed * 4) + 1
    assert "p01" in out.getvalue()


def read_events(resp: http.client.HTTPResponse, n: int) -> list[dict]:
    got = []
    while len(got) < n:
        line = resp.readline().decode()
        assert line, "stream ended early"
        if line.startswith("data: "):
            got.append(json.loads(line[len("data: "):]))
    return got


def wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_sse_sink_streams_events_to_a_real_http_client() -> None:
    sse = SseSink("127.0.0.1", 0)
    hub = SinkHub([sse])
    try:
        page = urllib.request.urlopen(sse.url, timeout=5).read().decode()
        assert "EventSource" in page
        conn = http.client.HTTPConnection("127.0.0.1", sse.port, timeout=5)
        conn.request("GET", "/events")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type").startswith("text/event-stream")
        wait_for(lambda: sse.client_count == 1)
        hub.publish_many([event(1, "p01"), event(2, "p02"), event(3, "p01")])
        got = read_events(resp, 3)
        assert [(e["player"], e["window_end_ns"]) for e in got] == [
            ("p01", 1 * 10**9), ("p02", 2 * 10**9), ("p01", 3 * 10**9)]
        # A tablet joining later first gets every player's latest event.
        late = http.client.HTTPConnection("127.0.0.1", sse.port, timeout=5)
        late.request("GET", "/events")
        snap = read_events(late.getresponse(), 2)
        assert {(e["player"], e["window_end_ns"]) for e in snap} == {
            ("p01", 3 * 10**9), ("p02", 2 * 10**9)}
        missing = http.client.HTTPConnection("127.0.0.1", sse.port, timeout=5)
        missing.request("GET", "/nope")
        assert missing.getresponse().status == 404
    finally:
        closer = threading.Thread(target=hub.close)
        closer.start()
        closer.join(5.0)
        assert not closer.is_alive(), "closing the SSE sink hung with clients connected"


def test_sse_sink_reports_a_port_in_use() -> None:
    first = SseSink("127.0.0.1", 0)
    try:
        with pytest.raises(Exception, match="pick a free port"):
            SseSink("127.0.0.1", first.port)
    finally:
        first.close()


def test_a_new_session_keeps_the_last_sessions_events_file(tmp_path: Path) -> None:
    """A kit file's fixed `jsonl = "events.jsonl"` used to replace the last session's events,
    which may have been its only record."""
    import os

    from fusion_edge.runtime.sinks import SessionJsonLinesSink

    path = tmp_path / "events.jsonl"
    path.write_text('{"last": "session"}\n')
    os.utime(path, (1_780_000_000, 1_780_000_000))
    untouched = SessionJsonLinesSink(path)
    untouched.close()  # a run that never started: nothing moves
    assert path.read_text() == '{"last": "session"}\n' and untouched.kept is None
    sink = SessionJsonLinesSink(path)
    sink.handle([event(1)])
    sink.close()
    assert sink.kept is not None and sink.kept.parent == tmp_path
    assert sink.kept.name.startswith("events.2026") and sink.kept.suffix == ".jsonl"
    assert sink.kept.read_text() == '{"last": "session"}\n'
    assert json.loads(path.read_text().splitlines()[0])["player"] == "p01"
    again = SessionJsonLinesSink(path)  # a second session in the same second: a free name
    os.utime(path, (1_780_000_000, 1_780_000_000))
    again.session_done()
    again.close()
    assert again.kept is not None and again.kept.name.endswith("-2.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    nothing = SessionJsonLinesSink(empty)
    nothing.session_done()
    nothing.close()
    assert nothing.kept is None  # an empty file holds nothing worth keeping
