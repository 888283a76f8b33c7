"""`fusion-edge calibrate ...`: IMU calibration and clock-alignment reports.

The root app registers this group with ``app.add_typer(calibrate_app, name="calibrate")``.
Each command parses its options, calls one library function and prints the result.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from fusion_edge.calibration.accelerometer import misalignment_angles, scale_factors
from fusion_edge.calibration.clock import (
    ClockAlignment,
    ClockConfig,
    fit_clock_observations,
    read_clock_csv,
)
from fusion_edge.calibration.guided import GuidedImuCalibration, Prompt, PromptKind
from fusion_edge.calibration.imu import (
    ImuCalibration,
    calibration_path,
    calibration_target,
    save_calibration,
)
from fusion_edge.calibration.imu_fit import ImuCalibrationConfig, calibrate_imu
from fusion_edge.calibration.live import run_guided_over_ble
from fusion_edge.calibration.recording import read_imu_csv
from fusion_edge.cli.common import cli_errors, console
from fusion_edge.errors import CalibrationError

calibrate_app = typer.Typer(
    help="Calibrate pods: IMU bias/scale/misalignment/iron, and device-clock alignment.",
    no_args_is_help=True,
)


#: Below this span of packets a device's drift figure means little (docs/calibration.md).
SHORT_CLOCK_SPAN_S = 20.0


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x, digits) for x in v)
    return str(v)


def _vec(a: np.ndarray, digits: int = 4) -> str:
    return "[" + ", ".join(f"{x:+.{digits}f}" for x in np.asarray(a).ravel()) + "]"


def _print_calibration(cal: ImuCalibration, path: Path) -> None:
    q = cal.quality
    table = Table(title=escape(f"IMU calibration of pod {cal.pod_id}"), show_lines=False)
    table.add_column("sensor")
    table.add_column("parameter")
    table.add_column("value")
    accel_q = q.get("accel", {})
    table.add_row("accel", "method", _fmt(accel_q.get("method")))
    table.add_row("", "bias (m/s^2)", _vec(cal.accel_bias))
    table.add_row("", "scale", _vec(scale_factors(cal.accel_matrix), 5))
    table.add_row("", "misalignment xy, xz, yz (rad)", _vec(misalignment_angles(cal.accel_matrix)))
    table.add_row("", "poses / faces", f"{accel_q.get('poses')} / {_fmt(accel_q.get('faces'))}")
    table.add_row(
        "", "coverage / spread", f"{_fmt(accel_q.get('coverage'))} / {_fmt(accel_q.get('spread'))}"
    )
    table.add_row("", "residual RMS (m/s^2)", _fmt(accel_q.get("residual_rms_ms2")))
    if accel_q.get("max_pose_tilt_deg") is not None:
        table.add_row("", "worst pose tilt (deg)", _fmt(accel_q.get("max_pose_tilt_deg")))
    gyro_q = q.get("gyro", {})
    table.add_row("gyro", "bias (rad/s)", _vec(cal.gyro_bias, 5))
    table.add_row(
        "",
        "still time (s) / periods",
        f"{_fmt(gyro_q.get('still_s'))} / {gyro_q.get('still_periods')}",
    )
    table.add_row("", "bias spread (rad/s)", _fmt(gyro_q.get("bias_spread_rad_s")))
    if cal.mag_hard_iron is not None:
        mag_q = q.get("mag", {})
        table.add_row("mag", "hard iron (uT)", _vec(cal.mag_hard_iron, 2))
        table.add_row("", "soft iron", _vec(np.asarray(cal.mag_soft_iron), 4))
        table.add_row(
            "",
            f"field (uT, {mag_q.get('field_strength_source')})",
            _fmt(mag_q.get("field_strength_ut")),
        )
        table.add_row("", "coverage", _fmt(mag_q.get("coverage")))
        table.add_row("", "residual RMS (uT)", _fmt(mag_q.get("residual_rms_ut")))
    else:
        table.add_row("mag", "-", "not calibrated")
    console.print(table)
    console.print(f"wrote [bold]{escape(str(path))}[/]")


def _print_prompt(prompt: Prompt) -> None:
    style = {
        PromptKind.MOVED: "yellow",
        PromptKind.WRONG_FACE: "yellow",
        PromptKind.CAPTURED: "green",
        PromptKind.DONE: "bold",
    }.get(prompt.kind, "")
    text = escape(f"[{prompt.step}/{prompt.total}] {prompt.text}")
    console.print(f"[{style}]{text}[/]" if style else text, highlight=False)


@calibrate_app.command("imu")
def imu(
    recording: Annotated[
        Path | None,
        typer.Option(
            "--recording",
            help="CSV with columns t,ax,ay,az,gx,gy,gz[,mx,my,mz] (s, m/s^2, rad/s, uT).",
        ),
    ] = None,
    pod: Annotated[
        str | None,
        typer.Option("--pod", help="Calibrate this pod live over BLE, with guided steps."),
    ] = None,
    out: Annotated[
        str | None,  # not Path: its trailing '/' says "a folder", and Path drops it
        typer.Option(
            "--out", help="Calibration JSON to write, or a folder (an existing one, or a path "
            "ending in '/') to write <pod-id>.imu-calibration.json into (default: the current folder)."
        ),
    ] = None,
    pod_id: Annotated[
        str | None,
        typer.Option(
            "--pod-id", help="Pod id stored in the file (default: --pod, or the CSV's name)."
        ),
    ] = None,
    mag: Annotated[
        bool | None,
        typer.Option(
            "--mag/--no-mag",
            help="Calibrate the magnetometer (default: when the recording has mx,my,mz or the "
            "pod streams a magnetometer).",
        ),
    ] = None,
    field_strength: Annotated[
        float | None,
        typer.Option(
            "--field-ut", help="Local magnetic field strength in uT (default: estimated)."
        ),
    ] = None,
    hold: Annotated[
        float, typer.Option("--hold", help="Live mode: seconds to hold each pose.")
    ] = 2.0,
) -> None:
    """Calibrate a pod's IMU from a recording, or live with guided steps."""
    with cli_errors():
        config = ImuCalibrationConfig(use_magnetometer=mag, field_strength_ut=field_strength)
        if (recording is None) == (pod is None):
            raise CalibrationError(
                "give either --recording FILE.csv (a recorded procedure) or --pod ID (live, "
                "guided), not both and not neither"
            )
        ident = pod_id or (recording.stem if recording is not None else str(pod))
        # A bad --out is refused now, not after the procedure has been done.
        target = calibration_target(out if out is not None else calibration_path(".", ident), ident)
        if recording is not None:
            rec = read_imu_csv(recording)
            cal = calibrate_imu(rec, ident, config)
        else:
            guided = GuidedImuCalibration(ident, with_magnetometer=mag, hold_s=hold, config=config)
            run_guided_over_ble(guided, str(pod), _print_prompt)
            cal = guided.result()
        path = save_calibration(cal, target)
        _print_calibration(cal, path)


@calibrate_app.command("clock")
def clock(
    recording: Annotated[
        Path | None,
        typer.Option(
            "--recording", help="CSV with columns device,boot_id,device_time_us,host_time_ns."
        ),
    ] = None,
    kit: Annotated[
        Path | None, typer.Option("--kit", help="Listen to the kit's pods (kit file) live.")
    ] = None,
    simulate: Annotated[
        int | None,
        typer.Option("--simulate", help="Listen to N simulated pods (drifting clocks) live."),
    ] = None,
    seconds: Annotated[float, typer.Option("--seconds", help="How long to listen live.")] = 30.0,
) -> None:
    """Report each device's clock offset and drift against the host clock.

    From a recording (--recording), or live from every connected pod: the kit's (--kit) or
    simulated ones (--simulate N), over the real BLE transport.
    """
    chosen = [x is not None for x in (recording, kit, simulate)]
    with cli_errors():
        if sum(chosen) != 1:
            raise CalibrationError(
                "give one of --recording FILE.csv, --kit KIT.toml or --simulate N (just one)"
            )
        if recording is not None:
            alignment = fit_clock_observations(read_clock_csv(recording), where=str(recording))
            title = escape(f"Clock alignment ({recording.name})")
        else:
            import asyncio

            from fusion_edge.calibration.live import listen_clocks

            addresses = None
            if kit is not None:
                from fusion_edge.runtime.kit import load_kit

                addresses = [p.pod for p in load_kit(kit).players if p.pod]
            alignment = ClockAlignment()
            started = time.monotonic()
            try:
                asyncio.run(listen_clocks(addresses=addresses, simulate=simulate, seconds=seconds,
                                          on_progress=console.print, alignment=alignment))
                title = f"Clock alignment (live, {seconds:.0f} s)"
            except KeyboardInterrupt:
                # The operator stopped early: what was heard is a valid (shorter) fit; report it.
                heard = time.monotonic() - started
                if not alignment.estimates():
                    raise CalibrationError(
                        f"stopped after {heard:.0f} s before any pod was heard: nothing to report; "
                        "check that the pods are on and in range, then listen again"
                    ) from None
                console.print(f"[yellow]stopped after {heard:.0f} s:[/] reporting what was heard so far")
                title = f"Clock alignment (live, stopped after {heard:.0f} s of {seconds:.0f} s)"
        table = Table(title=title)
        for col in (
            "device",
            "boot",
            "packets",
            "span (s)",
            "offset (ns)",
            "drift (ppm)",
            "spread (ms)",
        ):
            table.add_column(col, justify="left" if col == "device" else "right")
        for est in alignment.estimates():
            table.add_row(
                escape(str(est.device)),
                str(est.boot_id),
                str(est.observations),
                f"{est.span_s:.1f}",
                str(est.offset_ns),
                f"{est.drift_ppm:+.2f}",
                f"{est.spread_ns / 1e6:.3f}",
            )
        console.print(table)
        short = [e for e in alignment.estimates() if e.span_s < SHORT_CLOCK_SPAN_S]
        if short:
            console.print(
                f"[yellow]note:[/] {len(short)} device(s) were heard for less than "
                f"{SHORT_CLOCK_SPAN_S:.0f} s: their drift is not yet measured (it can sit at the "
                "+-200 ppm bound); listen for a minute (--seconds 60) or record longer"
            )
        bound = ClockConfig().max_drift_ppm
        pinned = [e for e in alignment.estimates()
                  if e.span_s >= SHORT_CLOCK_SPAN_S and abs(e.drift_ppm) >= 0.99 * bound]
        if pinned:
            names = ", ".join(escape(str(e.device)) for e in pinned)
            console.print(
                f"[yellow]warning:[/] the drift of {names} sits at the fit's +-{bound:.0f} ppm bound: "
                "a real crystal is within about 100 ppm, so these times do not come from one "
                "device clock and one host clock (a reset or jump in the recording, or mixed-up "
                "columns); its offset and the alignment error below are not to be trusted"
            )
        console.print(
            f"estimated cross-device alignment error: "
            f"{alignment.alignment_error_ns() / 1e6:.3f} ms (offset includes the smallest "
            "transport delay seen)"
        )


@calibrate_app.command("quant-set")
def quant_set(
    run: Path = typer.Argument(..., help="Training run folder."),
    data: Path = typer.Option(..., "--data", help="The dataset the run was trained on."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the .npz."),
    windows: int | None = typer.Option(
        None, "--windows", help="How many windows to choose (default: as export, 256, or all the "
        "run's training windows when it has fewer)."
    ),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier set at --out."),
) -> None:
    """Write the INT8 calibration windows of a run as an .npz (no pickle) for other tools.

    The same stratified, normalized sample `fusion-edge export` calibrates with.
    """
    from fusion_edge.calibration.quant_sets import CalibrationSet
    from fusion_edge.export.pipeline import ExportConfig, calibration_set
    from fusion_edge.toolkit.checkpoint import read_run_info
    from fusion_edge.toolkit.dataset import Dataset

    with cli_errors():
        CalibrationSet.check_target(out, overwrite=overwrite)
        info = read_run_info(run)
        ds = Dataset.open(data)
        cset = calibration_set(info, ds, ExportConfig(calibration_windows=windows, seed=seed))
        path = cset.save(out)
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in cset.inputs.items())
    console.print(f"wrote {len(cset)} calibration windows ({shapes}) to [bold]{path}[/]")
