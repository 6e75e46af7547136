"""One ``fusion-ros calibrate`` run: read frames, estimate, measure, write (ROS-free, torch-free)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import yaml

from fusion_ros.calibrate.outputs import check_writable, output_paths, overlay_image, params_yaml, write_atomic, \
    write_json, write_png
from fusion_ros.errors import ConfigError, FusionError
from fusion_ros.pipeline.registration import IDENTITY, RegistrationConfig
from fusion_ros.pipeline.registration_estimate import EstimateConfig, board_error, estimate_homography, \
    estimate_homography_checkerboard, estimate_residual

__all__ = ["CalibrateRequest", "calibrate", "read_initial", "iter_frames"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrateRequest:
    """What to calibrate from and where to write (the CLI flags)."""

    out: str
    bag: str | None = None
    rgb_topic: str | None = None
    thermal_topic: str | None = None
    pairs: str | None = None
    force: bool = False
    model: str = "homography"
    target: str = "scene"
    board: tuple[int, int] | None = None
    initial: str | None = None
    every: int = 10
    max_frames: int = 200
    slop_s: float | None = None
    progress: bool = True


def read_initial(text: str | None) -> np.ndarray:
    """``--initial``: a params YAML holding ``homography`` (under any node's ros__parameters) or 9 values."""
    if not text:
        return np.asarray(IDENTITY, np.float64).reshape(3, 3)
    path = Path(text)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"--initial {path}: file not found")
        doc = yaml.safe_load(path.read_text()) or {}
        found = [v["ros__parameters"]["homography"] for v in doc.values()
                 if isinstance(v, dict) and isinstance(v.get("ros__parameters"), dict)
                 and "homography" in v["ros__parameters"]]
        if not found:
            raise ConfigError(f"--initial {path}: no ros__parameters.homography in it")
        values = found[0]
    else:
        try:
            values = [float(v) for v in text.replace(" ", "").strip("[]").split(",")]
        except ValueError:
            raise ConfigError(f"--initial '{text}': expected 9 comma-separated numbers or a params .yaml") from None
    cfg = RegistrationConfig(homography=tuple(float(v) for v in values))   # checks 9 values, not singular
    return np.asarray(cfg.homography, np.float64).reshape(3, 3)


def iter_frames(req: CalibrateRequest) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(thermal float32 [0, 1] after the node's AGC, rgb uint8 RGB) pairs of the request's input."""
    from fusion_ros.pipeline.agc import AGCConfig, ThermalAGC

    if req.max_frames < 1:
        raise ConfigError(f"--max-frames {req.max_frames} must be >= 1")
    agc = ThermalAGC(AGCConfig())     # the node's default AGC settings
    if req.bag:
        from fusion_ros.io.bag import iter_image_pairs

        for i, pair in enumerate(iter_image_pairs(req.bag, req.rgb_topic, req.thermal_topic, req.slop_s, req.every)):
            if i >= req.max_frames:
                break
            yield agc(pair.thermal), pair.rgb
        return
    from fusion_ros.io.images import read_ir, read_vis
    from fusion_ros.io.pairs import find_pairs

    pairs = find_pairs(req.pairs)
    if len(pairs) > req.max_frames:
        pairs = [pairs[i] for i in np.linspace(0, len(pairs) - 1, req.max_frames).round().astype(int)]
    for p in pairs:
        yield agc(read_ir(p.ir_path)), read_vis(p.vi_path)


def _median(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return round(float(np.median(finite)), 3) if finite else None


def _rounded(v: float) -> float | None:
    return round(float(v), 3) if math.isfinite(v) else None


def calibrate(req: CalibrateRequest) -> dict:
    """Run one calibration and write its params fragment, report and overlay.

    Returns:
        The report (also written as JSON) plus a one-line ``message``.

    Raises:
        ConfigError: a bad flag (outputs exist without --force, unknown model...).
        InsufficientStructureError: too little structure in the frames (or no board found).
    """
    from tqdm import tqdm

    paths = output_paths(req.out)
    check_writable(paths, req.force)
    initial = read_initial(req.initial)
    cfg = EstimateConfig(model=req.model)
    frames: list[tuple[np.ndarray, np.ndarray]] = []

    def kept() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        # Frames are kept (float thermal + RGB, ~2 MB at 640x480) for the residuals and the overlay afterwards.
        for pair in iter_frames(req):
            frames.append(pair)
            yield pair

    # The scene estimate passes over the frames 1 + refine_passes times; the bar counts frames of every pass.
    passes = 1 if req.target == "checkerboard" else 1 + cfg.refine_passes
    with tqdm(desc=f"calibrate ({passes} passes)" if passes > 1 else "calibrate", unit="frame",
              disable=not req.progress, total=None) as bar:
        if req.target == "checkerboard":
            h, detections, reasons, size = estimate_homography_checkerboard(kept(), req.board, req.model, bar.update)
            extra = {"board": list(req.board),
                     "board_error_px_before": [_rounded(board_error(initial, d)) for d in detections],
                     "board_error_px_after": [_rounded(board_error(h, d)) for d in detections]}
        else:
            result = estimate_homography(kept(), cfg, initial=initial, progress=bar.update)
            h, reasons, size = result.homography, result.reasons, result.size
            extra = {"structure": [round(f.structure, 4) for f in result.frames]}
    if not frames:
        raise FusionError("no frames read")
    used = [not r for r in reasons]
    before = [estimate_residual(th, rgb, initial) for th, rgb in frames]
    after = [estimate_residual(th, rgb, h) for th, rgb in frames]
    report = {
        "homography": [round(float(v), 8) for v in h.ravel()],
        "initial": [round(float(v), 8) for v in initial.ravel()],
        "model": req.model, "target": req.target, "size": list(size),
        "source": req.bag or req.pairs,
        "frames_read": len(frames), "frames_used": int(sum(used)),
        "residual_px_before": _median([r for r, u in zip(before, used) if u]),
        "residual_px_after": _median([r for r, u in zip(after, used) if u]),
        "per_frame": [{"index": i, "used": u, "reason": r, "residual_px_before": _rounded(b),
                       "residual_px_after": _rounded(a)}
                      for i, (u, r, b, a) in enumerate(zip(used, reasons, before, after))],
        **extra,
        "files": {k: str(v) for k, v in paths.items()},
    }
    best = max((i for i in range(len(frames)) if used[i]),
               key=lambda i: extra["structure"][i] if "structure" in extra else 0.0)
    th, rgb = frames[best]
    rb, ra = report["residual_px_before"], report["residual_px_after"]
    labels = (f"before: {rb if rb is not None else '?'} px", f"after: {ra if ra is not None else '?'} px")
    write_png(paths["overlay"], overlay_image(th, rgb, initial, h, labels))
    write_json(paths["report"], report)
    comment = (f"fusion-ros calibrate ({req.target}, {req.model}) from {report['source']}: "
               f"{report['frames_used']} of {len(frames)} frames, residual {rb} -> {ra} px")
    write_atomic(paths["params"], params_yaml(h, comment))
    report["message"] = (f"homography from {report['frames_used']} of {len(frames)} frames, residual {rb} -> {ra} px; "
                         f"wrote {paths['params']}, {paths['report']}, {paths['overlay']}")
    return report
