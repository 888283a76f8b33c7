"""Profiler targets: overhead of the stage timers, and run-to-run agreement of p50.

Overhead: the same generated session is replayed offline through fresh FieldProcessors with the
`stage_timer` hook off and on, interleaved (off, on, off, on, ...) so machine noise hits both
alike; the overhead is the relative loss of throughput (median of the pairs). A second, direct
figure: the cost of one timer call, measured alone, times the calls a run makes, over the run's
processing time.

Repeatability: the same offline profile (run_profile) twice; p50 of end to end and of every stage.

    .venv/bin/python benchmarks/profile_overhead.py --bundle B [--players 10] [--seconds 90] \
        [--pairs 5]

Prints a table and writes benchmarks/results/profile_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from fusion_edge.runtime.bundle_model import BundleModel
from fusion_edge.runtime.field_kit import ProcessorConfig
from fusion_edge.runtime.profile.modes import ProfileConfig, _feed, run_profile
from fusion_edge.runtime.profile.stages import StageRecorder
from fusion_edge.runtime.profile.streams import generate_stream


def replay_s(stream, model, timer) -> float:
    processor = stream.processor(model, config=ProcessorConfig(stage_timer=timer), replay=True)
    t0 = time.perf_counter()
    for r in stream.records:
        _feed(processor, r, r[0])
    processor.finish()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--scenario", default="5v5")
    ap.add_argument("--players", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--pairs", type=int, default=5)
    args = ap.parse_args()
    model = BundleModel(args.bundle, preference=["onnxruntime-cpu"])
    stream = generate_stream(args.scenario, players=args.players, seconds=args.seconds, seed=1)
    replay_s(stream, model, None)  # warm-up: onnxruntime's first runs, caches
    offs, ons, calls = [], [], 0
    for _ in range(args.pairs):
        offs.append(replay_s(stream, model, None))
        rec = StageRecorder()
        ons.append(replay_s(stream, model, rec))
        calls = rec.calls
    pair_overheads = [on / off - 1.0 for off, on in zip(offs, ons, strict=True)]
    # Direct: the cost of one timer call alone.
    rec = StageRecorder()
    n = 200_000
    t0 = time.perf_counter()
    for i in range(n):
        rec("dsp", 0.1 + (i % 100) * 1e-3)
    per_call_s = (time.perf_counter() - t0) / n
    direct = per_call_s * calls / statistics.median(offs)

    runs = []
    for _ in range(2):
        r = run_profile(
            ProfileConfig(
                scenario=args.scenario,
                mode="offline",
                duration_s=args.seconds,
                players=args.players,
            ),
            model,
        )
        runs.append(
            {
                "end_to_end": r.end_to_end.percentile_ms(50),
                **{k: h.percentile_ms(50) for k, h in r.stages.items()},
            }
        )
    agree = {k: runs[1][k] / runs[0][k] - 1.0 for k in runs[0] if runs[0][k] > 0}
    doc = {
        "stream": {
            "scenario": args.scenario,
            "players": args.players,
            "seconds": args.seconds,
            "records": len(stream.records),
        },
        "replay_s_timer_off": offs,
        "replay_s_timer_on": ons,
        "overhead_median": statistics.median(pair_overheads),
        "overhead_pairs": pair_overheads,
        "timer_calls_per_run": calls,
        "timer_call_us": per_call_s * 1e6,
        "overhead_direct": direct,
        "repeat_p50_ms": runs,
        "repeat_p50_rel_diff": agree,
        "load_average": list(__import__("os").getloadavg()),
    }
    print(f"{'replay, timers off (s)':34s} " + " ".join(f"{v:7.3f}" for v in offs))
    print(f"{'replay, timers on  (s)':34s} " + " ".join(f"{v:7.3f}" for v in ons))
    print(f"{'overhead (median of pairs)':34s} {doc['overhead_median']:+.2%}")
    print(f"{'timer call / calls per run':34s} {per_call_s * 1e6:.3f} us x {calls}")
    print(f"{'overhead (direct: calls x cost)':34s} {direct:+.2%}")
    print(f"{'p50 run 1 / run 2 (ms), diff':34s}")
    for k in runs[0]:
        print(f"  {k:32s} {runs[0][k]:9.4f} {runs[1][k]:9.4f} {agree.get(k, 0.0):+.1%}")
    out = Path(__file__).parent / "results" / "profile_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
