"""Where feedback events go: JSON lines, a live terminal table, and a local SSE endpoint.

The inference thread hands each event to :meth:`SinkHub.publish`, which never waits on a sink:
every sink has its own bounded queue and worker thread, and a full queue drops its OLDEST event
(the coach wants the latest state, not a backlog) and counts the drop. A sink that raises is
logged and counted; it never takes the box down. Sinks:

* :class:`JsonLinesSink` - one event per line, appended; flushed per batch, fsync at most once a
  second (a pulled cable loses at most the last second);
* :class:`TerminalTableSink` - a rich live table, one row per player, redrawn at most 4 times a
  second; when stdout is not a terminal it prints nothing until :meth:`close`, then one table;
* :class:`SseSink` - an HTTP server (stdlib ``ThreadingHTTPServer``) a coach's tablet reads:
  ``GET /events`` is a ``text/event-stream`` (``data: {json}\\n\\n`` per event, the latest event
  of every player first), ``GET /`` a small page that shows the live table.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from fusion_edge.errors import ConfigError
from fusion_edge.runtime.events import FeedbackEvent

__all__ = [
    "Sink",
    "SinkStats",
    "SinkHub",
    "JsonLinesSink",
    "TerminalTableSink",
    "SseSink",
]

log = logging.getLogger(__name__)


@runtime_checkable
class Sink(Protocol):
    """Something that receives batches of feedback events on its own worker thread."""

    name: str

    def handle(self, events: Sequence[FeedbackEvent]) -> None:
        """Deliver a batch (called from the sink's worker thread only)."""

    def close(self) -> None:
        """Flush and release resources (once, from the worker thread, after the last batch)."""


@dataclass(frozen=True)
class SinkStats:
    """Counters of one sink in a hub.

    Attributes:
        name: The sink's name.
        delivered: Events handed to the sink.
        dropped: Events dropped because its queue was full.
        errors: Batches whose delivery raised.
        queued: Events waiting now.
        last_error: Text of the latest error, if any.
    """

    name: str
    delivered: int
    dropped: int
    errors: int
    queued: int
    last_error: str | None


class _SinkWorker:
    """A bounded drop-oldest queue and the thread that drains it into one sink."""

    def __init__(self, sink: Sink, queue_size: int, batch_size: int) -> None:
        self.sink = sink
        self.queue_size = queue_size
        self.batch_size = batch_size
        self._queue: deque[FeedbackEvent] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self.delivered = 0
        self.dropped = 0
        self.errors = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"sink-{sink.name}", daemon=True
        )
        self._thread.start()

    def put(self, events: Iterable[FeedbackEvent]) -> None:
        with self._cond:
            if self._closing:
                return
            for ev in events:
                if len(self._queue) >= self.queue_size:
                    self._queue.popleft()
                    self.dropped += 1
                self._queue.append(ev)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    break
                n = min(len(self._queue), self.batch_size)
                batch = [self._queue.popleft() for _ in range(n)]
            try:
                self.sink.handle(batch)
                self.delivered += n
            except Exception as exc:  # a sink must never take the box down
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("sink %s failed on a batch of %d: %s", self.sink.name, n, exc)
        try:
            self.sink.close()
        except Exception as exc:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("sink %s failed to close: %s", self.sink.name, exc)

    def close(self, timeout: float, drain: bool) -> bool:
        with self._cond:
            self._closing = True
            if not drain:
                self.dropped += len(self._queue)
                self._queue.clear()
            self._cond.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stats(self) -> SinkStats:
        with self._cond:
            queued = len(self._queue)
        return SinkStats(
            self.sink.name, self.delivered, self.dropped, self.errors, queued, self.last_error
        )


class SinkHub:
    """Fans events out to sinks without ever blocking the publisher.

    Args:
        sinks: The sinks to feed; more can be added with :meth:`add`.
        queue_size: Events each sink may have waiting; beyond it the oldest is dropped.
        batch_size: Most events handed to a sink in one call.
    """

    def __init__(
        self, sinks: Iterable[Sink] = (), *, queue_size: int = 1024, batch_size: int = 256
    ) -> None:
        if queue_size < 1 or batch_size < 1:
            raise ValueError(
                f"queue_size ({queue_size}) and batch_size ({batch_size}) must be at least 1"
            )
        self.queue_size = queue_size
        self.batch_size = batch_size
        self._workers: list[_SinkWorker] = []
        self._closed = False
        for sink in sinks:
            self.add(sink)

    def add(self, sink: Sink) -> None:
        """Start feeding ``sink`` (events published earlier are not replayed to it)."""
        if self._closed:
            raise RuntimeError("this SinkHub is closed: make a new one")
        if any(w.sink.name == sink.name for w in self._workers):
            raise ConfigError(
                f"two sinks are named '{sink.name}': give each sink a distinct name"
            )
        self._workers.append(_SinkWorker(sink, self.queue_size, self.batch_size))

    def publish(self, event: FeedbackEvent) -> None:
        """Queue one event for every sink; returns at once."""
        for worker in self._workers:
            worker.put((event,))

    def publish_many(self, events: Sequence[FeedbackEvent]) -> None:
        """Queue several events (one hop's players) for every sink; returns at once."""
        for worker in self._workers:
            worker.put(events)

    def stats(self) -> dict[str, SinkStats]:
        """Counters per sink name."""
        return {w.sink.name: w.stats() for w in self._workers}

    def close(self, timeout: float = 5.0, *, drain: bool = True) -> dict[str, SinkStats]:
        """Deliver what is queued (unless ``drain`` is False), close every sink, return stats.

        A sink still busy after ``timeout`` seconds is abandoned (its thread is a daemon) and
        logged, so shutting the box down never hangs on a stuck sink.
        """
        self._closed = True
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            if not worker.close(max(0.0, deadline - time.monotonic()), drain):
                log.warning("sink %s did not finish within %.1f s", worker.sink.name, timeout)
        return self.stats()

    def __enter__(self) -> SinkHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JsonLinesSink:
    """Appends each event as one JSON line.

    Args:
        path: File to append to (parent folders are created).
        fsync_interval_s: Least time between two fsyncs; every batch is flushed regardless.
        name: Sink name in the hub's stats.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, fsync_interval_s: float = 1.0, name: str = "jsonl"
    ) -> None:
        self.name = name
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115
        self._fsync_interval = fsync_interval_s
        self._last_fsync = time.monotonic()
        self.fsyncs = 0

    def handle(self, events: Sequence[FeedbackEvent]) -> None:
        """Write, flush, and fsync if the last fsync is more than the interval ago."""
        self._file.write("".join(ev.to_json() + "\n" for ev in events))
        self._file.flush()
        now = time.monotonic()
        if now - self._last_fsync >= self._fsync_interval:
            os.fsync(self._file.fileno())
            self._last_fsync = now
            self.fsyncs += 1

    def close(self) -> None:
        """Flush, fsync and close the file."""
        if self._file.closed:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self.fsyncs += 1
        self._file.close()


class SessionJsonLinesSink:
    """One run, one events file, and no earlier session's events lost.

    The file is this run's once it has something to put there (its first event, or
    :meth:`session_done` at the end of a session that scored nothing). An earlier file of the
    same name is then kept beside it, renamed after the time it was last written
    (``events.jsonl`` -> ``events.20260601-101500.jsonl``; :attr:`kept` says where), so a kit
    file's fixed ``jsonl = "events.jsonl"`` never overwrites the last session, which may have
    been its only record. A run that stops before its session starts (a typo in the scenario,
    a missing serial port, no Bluetooth adapter) leaves the file as it was.
    """

    name = "jsonl"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.kept: Path | None = None
        self._sink: JsonLinesSink | None = None
        self._lock = threading.Lock()

    def _open(self) -> JsonLinesSink:
        with self._lock:
            if self._sink is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if self.path.is_file() and self.path.stat().st_size:
                    self.kept = _keep_aside(self.path)
                else:
                    self.path.unlink(missing_ok=True)
                self._sink = JsonLinesSink(self.path)
            return self._sink

    def handle(self, events: Sequence[FeedbackEvent]) -> None:
        self._open().handle(events)

    def session_done(self) -> None:
        """The session ran: the file is this run's even if it scored nothing."""
        self._open()

    def close(self) -> None:
        with self._lock:
            if self._sink is not None:
                self._sink.close()


def _keep_aside(path: Path) -> Path:
    """Rename ``path`` after its modification time (a free name: -2, -3... when taken)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
    target = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
    n = 2
    while target.exists():
        target = path.with_name(f"{path.stem}.{stamp}-{n}{path.suffix}")
        n += 1
    os.replace(path, target)
    return target


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


class TerminalTableSink:
    """A rich live table of every player's latest event.

    Args:
        console: The rich console to draw on (default: stdout).
        refresh_hz: Most redraws per second.
        action_task: Task shown in the 'action' column.
        tactic_task: Task shown in the 'tactic' column.
        name: Sink name in the hub's stats.
    """

    COLUMNS = (
        "player", "action (p)", "tactic", "quality", "distance m", "HSR m", "sprints",
        "acc/dec", "load", "risk", "backend", "latency ms",
    )

    def __init__(
        self,
        console: Any | None = None,
        *,
        refresh_hz: float = 4.0,
        action_task: str = "action",
        tactic_task: str = "tactic",
        name: str = "terminal",
    ) -> None:
        from rich.console import Console

        self.name = name
        self.console = console if console is not None else Console()
        self._min_interval = 1.0 / refresh_hz
        self._action = action_task
        self._tactic = tactic_task
        self._latest: dict[str, FeedbackEvent] = {}
        self._live: Any = None
        self._last_draw = 0.0
        self.redraws = 0

    def _label(self, ev: FeedbackEvent, task: str, with_p: bool) -> str:
        pred = ev.predictions.get(task)
        if not pred or "label" not in pred:
            return "-" if ev.status.value == "scored" else f"({ev.status_reason})"
        return f"{pred['label']} ({pred['probability']:.2f})" if with_p else str(pred["label"])

    def table(self) -> Any:
        """The current table as a rich renderable."""
        from rich.table import Table

        escalated = any(ev.escalated for ev in self._latest.values())
        table = Table(
            title="fusion-edge: live feedback",
            caption=ESCALATED_LEGEND if escalated else None,
            expand=False,
        )
        for col in self.COLUMNS:
            table.add_column(col, justify="left" if col in ("player", "action (p)", "tactic",
                                                            "risk", "backend") else "right")
        for player in sorted(self._latest):
            ev = self._latest[player]
            ld = ev.load
            risk = ev.risk_band.value if ev.risk_band is not None else "-"
            backend = ev.backend + (" ^" if ev.escalated else "")
            table.add_row(
                player,
                self._label(ev, self._action, True),
                self._label(ev, self._tactic, False),
                _fmt(ev.quality, ".2f"),
                _fmt(ld.distance_m if ld else None, ".0f"),
                _fmt(ld.hsr_m if ld else None, ".0f"),
                str(ld.sprints) if ld else "-",
                f"{ld.accelerations}/{ld.decelerations}" if ld else "-",
                _fmt(ld.player_load if ld else None, ".1f"),
                risk,
                backend,
                _fmt(ev.latency_ms, ".1f"),
            )
        return table

    def handle(self, events: Sequence[FeedbackEvent]) -> None:
        """Remember each player's latest event; redraw when a terminal allows it."""
        for ev in events:
            self._latest[ev.player] = ev
        if not self.console.is_terminal:
            return  # a log file or pipe gets one table at close, not thousands of redraws
        now = time.monotonic()
        if self._live is None:
            from rich.live import Live

            self._live = Live(self.table(), console=self.console, auto_refresh=False)
            self._live.start(refresh=True)
            self._last_draw = now
            self.redraws += 1
        elif now - self._last_draw >= self._min_interval:
            self._live.update(self.table(), refresh=True)
            self._last_draw = now
            self.redraws += 1

    def close(self) -> None:
        """Draw the final table (the only output when stdout is not a terminal)."""
        if self._live is not None:
            self._live.update(self.table(), refresh=True)
            self._live.stop()
            self._live = None
        else:
            self.console.print(self.table())
        self.redraws += 1


#: What the " ^" after a backend name means, under the terminal table and on the web page.
ESCALATED_LEGEND = "^ escalated: the compressed model was unsure, the full-precision model answered"

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>fusion-edge live</title>
<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}
.high{background:#f99}.medium{background:#fd8}.low{background:#cfc}</style></head>
<body><h3>fusion-edge live feedback <small id="st">connecting</small></h3>
<table><thead><tr><th>player</th><th>action (p)</th><th>tactic</th><th>quality</th>
<th>distance m</th><th>HSR m</th><th>sprints</th><th>acc/dec</th><th>load</th><th>risk</th>
<th>backend</th><th>latency ms</th></tr></thead><tbody id="rows"></tbody></table>
<p><small>""" + ESCALATED_LEGEND + """</small></p>
<script>
const rows = {};
function f(x, d) { return (x === null || x === undefined) ? "-" : Number(x).toFixed(d); }
function lab(p, withP) { if (!p || !p.label) return "-";
  return withP ? p.label + " (" + f(p.probability, 2) + ")" : p.label; }
const es = new EventSource("events");
es.onopen = () => { document.getElementById("st").textContent = "live"; };
es.onerror = () => { document.getElementById("st").textContent = "reconnecting"; };
es.onmessage = (m) => {
  const e = JSON.parse(m.data), l = e.load || {}, pr = e.predictions || {};
  let tr = rows[e.player];
  if (!tr) { tr = document.createElement("tr"); rows[e.player] = tr;
    document.getElementById("rows").appendChild(tr); }
  const cells = [e.player, lab(pr.action, true), lab(pr.tactic, false), f(e.quality, 2),
    f(l.distance_m, 0), f(l.hsr_m, 0), l.sprints ?? "-",
    e.load ? l.accelerations + "/" + l.decelerations : "-", f(l.player_load, 1),
    e.risk_band || "-", e.backend + (e.escalated ? " ^" : ""), f(e.latency_ms, 1)];
  tr.replaceChildren(...cells.map((c) => { const td = document.createElement("td");
    td.textContent = c; return td; }));
  tr.className = e.risk_band || "";
};
</script></body></html>
"""


class _SseClient:
    """One connected reader: a bounded drop-oldest queue of JSON lines."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.lines: deque[str] = deque()
        self.cond = threading.Condition()
        self.dropped = 0

    def put(self, lines: Iterable[str]) -> None:
        with self.cond:
            for line in lines:
                if len(self.lines) >= self.size:
                    self.lines.popleft()
                    self.dropped += 1
                self.lines.append(line)
            self.cond.notify()


class SseSink:
    """Serves events to browsers on the local network as Server-Sent Events.

    Args:
        host: Address to bind; ``127.0.0.1`` keeps it on the box, the box's pitch-LAN address
            (or ``0.0.0.0``) lets tablets connect.
        port: TCP port; 0 picks a free one (read it back from :attr:`port`).
        client_queue: Events each slow client may lag behind before its oldest are dropped.
        keepalive_s: Seconds between keep-alive comments when no event comes (detects gone
            clients and keeps proxies from closing the stream).
        name: Sink name in the hub's stats.

    Raises:
        ConfigError: The address cannot be bound (port in use, address not on this box).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        client_queue: int = 256,
        keepalive_s: float = 15.0,
        name: str = "sse",
    ) -> None:
        self.name = name
        self._client_queue = client_queue
        self._keepalive = keepalive_s
        self._clients: set[_SseClient] = set()
        self._lock = threading.Lock()
        self._latest: dict[str, str] = {}
        self._closing = threading.Event()
        handler = self._make_handler()
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve live events on {host}:{port} ({exc}): pick a free port, or a host "
                "address this box has (127.0.0.1, or its address on the pitch LAN)"
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
            name="sse-server", daemon=True,
        )
        self._thread.start()

    @property
    def host(self) -> str:
        """The bound address."""
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Address of the live page."""
        return f"http://{self.host}:{self.port}/"

    @property
    def client_count(self) -> int:
        """Readers connected to ``/events`` now."""
        with self._lock:
            return len(self._clients)

    def handle(self, events: Sequence[FeedbackEvent]) -> None:
        """Send a batch to every connected reader."""
        lines = [ev.to_json() for ev in events]
        with self._lock:
            for ev, line in zip(events, lines, strict=True):
                self._latest[ev.player] = line
            clients = list(self._clients)
        for client in clients:
            client.put(lines)

    def close(self) -> None:
        """End every stream and stop the server."""
        self._closing.set()
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            with client.cond:
                client.cond.notify()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(2.0)

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        client = _SseClient(self._client_queue)
        with self._lock:
            client.put(self._latest.values())  # a tablet joining mid-session sees everyone
            self._clients.add(client)
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
            handler.send_header("Cache-Control", "no-cache")
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(b"retry: 2000\n\n")
            handler.wfile.flush()
            while not self._closing.is_set():
                with client.cond:
                    if not client.lines:
                        client.cond.wait(self._keepalive)
                    lines = list(client.lines)
                    client.lines.clear()
                if self._closing.is_set():
                    break
                payload = "".join(f"data: {line}\n\n" for line in lines) if lines else ": ka\n\n"
                handler.wfile.write(payload.encode("utf-8"))
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass  # the tablet went away; nothing to clean up beyond the client entry
        finally:
            with self._lock:
                self._clients.discard(client)

    def _make_handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "fusion-edge-sse"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                if path == "/events":
                    sink._stream(self)
                elif path in ("/", "/index.html"):
                    body = _PAGE.encode("utf-8")
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404, "only / and /events exist here")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("sse %s: " + format, self.client_address[0], *args)

        return Handler
