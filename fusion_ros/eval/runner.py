"""``fusion-ros eval``: score fusion methods on pairs (metrics, detector) and clips (flicker), side by side.

A method is one of:

* a folder of fused images (``NAME=DIR``): ``DIR/<dataset>/<stem>.*`` or ``DIR/<stem>.*``; grey images
  are fused luminances (the teachers' format) and are recoloured with the visible chroma when a colour
  image is needed (detector, grid);
* a student model (``NAME=PATH.onnx|.pt``, or ``lite`` / ``default`` for the shipped ones) run through
  the engine and :class:`~fusion_ros.pipeline.fuser.Fuser` (memory reset before every independent pair);
* a baseline: ``copy-vis`` (the visible image itself), ``copy-ir`` (the thermal image itself),
  ``teacher-mean`` (pixel mean of every folder method) or ``NAME=teacher-mean:A,B`` (of the named ones);
* ``teacher-select[:A,B][@window=17,tau=0.03,measure=edge+vif,blend=pyramid,levels=9]``: the per-region teacher selection
  target of training (:func:`fusion_ros.train.targets.select_target`) over the named (default: every) folder methods.

Baselines are always added, because MI, VIF and SSIM rank a copied source at or above real fusers.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from fusion_ros.errors import ConfigError, FusionError
from fusion_ros.eval import metrics as M
from fusion_ros.eval.data import find_output, recolour
from fusion_ros.io.clips import find_clips, iter_frames
from fusion_ros.io.images import read_ir, read_rgb_or_gray, read_vis
from fusion_ros.io.pairs import Pair, find_pairs
from fusion_ros.model.variants import VARIANTS

__all__ = ["Method", "EvalConfig", "parse_method", "prepare_methods", "method_output", "as_rgb", "evaluate_pairs", "evaluate_video", "evaluate_detection",
           "BASELINES"]

log = logging.getLogger(__name__)

BASELINES = ("copy-vis", "copy-ir")
# A method that does nothing clever: the mean of the visible luma and the thermal image. Under --misalign it gets
# the same shifted thermal input as the students, so its drop is the reference for theirs.
BLEND = "blend-50"
_SHIFTED_KINDS = ("student", BLEND)
_MODEL_EXTS = (".onnx", ".pt")


@dataclass
class Method:
    """One row of the tables.

    Attributes:
        name: row label.
        kind: "folder", "student", "copy-vis", "copy-ir", "teacher-mean" or "teacher-select".
        source: folder or model path (students: "", "lite", "default" or a file).
        members: folder-method names combined by "teacher-mean"/"teacher-select" (empty = every folder method).
        select: "teacher-select" only: its SelectParams.
        misalign_px: students only: the thermal input is shifted by this many pixels right and down before
            fusing (scored against the aligned sources), to measure robustness to a calibration error.
        misalign_deg: likewise, the thermal input is first rotated by this many degrees about its centre.
    """

    name: str
    kind: str
    source: str = ""
    members: tuple[str, ...] = ()
    fuser: object | None = field(default=None, repr=False)
    misalign_px: float = 0.0
    misalign_deg: float = 0.0
    select: object | None = None

    @property
    def is_baseline(self) -> bool:
        return self.kind in BASELINES

    def describe(self) -> dict:
        d = {"kind": self.kind, "source": self.source}
        if self.misalign_px:
            d["misalign_px"] = self.misalign_px
        if self.misalign_deg:
            d["misalign_deg"] = self.misalign_deg
        if self.kind in ("teacher-mean", "teacher-select"):
            d["members"] = list(self.members)
        return d


def parse_method(spec: str) -> Method:
    """Parse ``NAME=PATH``, ``PATH``, ``copy-vis``, ``copy-ir``, ``teacher-mean[:A,B]``,
    ``teacher-select[:A,B][@k=v,...]``, ``lite``, ``default``.

    Raises:
        ConfigError: unknown builtin or a path that does not exist.
    """
    # A bare teacher-select spec keeps its "@k=v" parameters: the name is the part before ":"/"@".
    name, sep, src = ("", "", spec) if spec.startswith("teacher-select") else spec.partition("=")
    if not sep:
        src = spec
        name = Path(spec.rstrip("/")).name if spec not in VARIANTS else f"student-{spec}"
        if Path(spec).suffix in _MODEL_EXTS:
            name = Path(spec).stem
        name = name.split(":")[0].split("@")[0] if src.startswith(("teacher-mean", "teacher-select")) else name
    if not name:
        raise ConfigError(f"method {spec!r} has an empty name; use NAME=PATH")
    if src in BASELINES or src == BLEND:
        return Method(name, src)
    if src.startswith("teacher-mean"):
        members = tuple(m for m in src.partition(":")[2].split(",") if m)
        return Method(name, "teacher-mean", src, members)
    if src.startswith("teacher-select"):
        from fusion_ros.train.targets import parse_select_params

        head, _, params = src.partition("@")
        members = tuple(m for m in head.partition(":")[2].split(",") if m)
        return Method(name, "teacher-select", src, members, select=parse_select_params(params))
    if src in VARIANTS:
        return Method(name, "student", src)
    p = Path(src).expanduser()
    if p.is_dir():
        return Method(name, "folder", str(p))
    if p.is_file() and p.suffix in _MODEL_EXTS:
        return Method(name, "student", str(p))
    raise ConfigError(f"method {spec!r}: {src!r} is not a folder of fused images, an .onnx/.pt model, "
                      f"or one of {', '.join(BASELINES)}, {BLEND}, teacher-mean[:A,B], teacher-select[:A,B][@k=v,...], "
                      "lite, default")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation settings.

    Attributes:
        backend: engine backend for student methods (auto | onnxruntime | torch | tensorrt).
        threads: CPU inference threads for students, 0 = all cores.
        jobs: metric worker processes, 0 = min(2, CPU count); 1 = compute in this process.
        metrics: metric names to compute (subset of fusion_ros.eval.metrics.METRICS).
        grid_images: pairs shown in the grid PNG (first of each dataset first), >= 0.
        add_baselines: add copy-vis and copy-ir rows when they were not asked for.
        speed: time students with the bench (480x640, median of 20) for the speed column.
        misalign_px: shift of the thermal input of the students and of the 50/50 blend (added as a reference), px
            (0 = aligned); the metrics still use the aligned pair.
        misalign_deg: rotation of that thermal input about its centre, degrees, before the shift (0 = none).
        auto_align: students run with the pipeline's automatic thermal shift (as the node does by default).
    """

    backend: str = "auto"
    threads: int = 0
    jobs: int = 0
    metrics: tuple[str, ...] = M.METRICS
    grid_images: int = 4
    add_baselines: bool = True
    speed: bool = True
    misalign_px: float = 0.0
    misalign_deg: float = 0.0
    auto_align: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.misalign_px <= 64.0:
            raise ConfigError(f"misalign_px={self.misalign_px} must be within [0, 64] pixels")
        if not -10.0 <= self.misalign_deg <= 10.0:
            raise ConfigError(f"misalign_deg={self.misalign_deg} must be within [-10, 10] degrees")
        if self.jobs < 0:
            raise ConfigError(f"jobs={self.jobs} must be >= 0 (0 = min(2, CPUs))")
        if self.grid_images < 0:
            raise ConfigError(f"grid_images={self.grid_images} must be >= 0")
        bad = [m for m in self.metrics if m not in M.METRICS]
        if bad:
            raise ConfigError(f"metrics {bad} unknown; choose from {', '.join(M.METRICS)}")


    @property
    def misaligned(self) -> bool:
        return bool(self.misalign_px or self.misalign_deg)


def prepare_methods(methods: list[Method], cfg: EvalConfig) -> list[Method]:
    """Add baselines, check teacher-mean members, build the students' fusers (memory off: pairs are stills)."""
    from fusion_ros.eval.fuse import StudentConfig, make_fuser

    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"method names must be unique, got {names}")
    out = list(methods)
    if cfg.add_baselines:
        for b in BASELINES + ((BLEND,) if cfg.misaligned else ()):
            if not any(m.kind == b for m in out):
                out.append(Method(b, b))
    folders = {m.name for m in out if m.kind == "folder"}
    for m in out:
        if m.kind in ("teacher-mean", "teacher-select"):
            if not m.members:
                m.members = tuple(sorted(folders))
            missing = [x for x in m.members if x not in folders]
            if missing or not m.members:
                raise ConfigError(f"{m.name}: {m.kind} needs folder methods to combine; unknown {missing}, "
                                  f"folder methods given: {sorted(folders)}")
        if m.kind == "student" and m.fuser is None:
            m.fuser = make_fuser(StudentConfig(model_path=m.source, backend=cfg.backend, threads=cfg.threads,
                                               use_memory=False, auto_align=cfg.auto_align))
        if m.kind in _SHIFTED_KINDS:
            m.misalign_px, m.misalign_deg = cfg.misalign_px, cfg.misalign_deg
    return out


def method_output(m: Method, pair: Pair, ir: np.ndarray, vis: np.ndarray,
                  cache: dict[str, np.ndarray | None]) -> np.ndarray | None:
    """A method's fused image for one pair: (H, W) grey luma or (H, W, 3) RGB uint8; None if it has none."""
    if m.kind == "copy-vis":
        return vis
    if m.kind == "copy-ir":
        return ir_to_u8(ir)
    if m.kind == "folder":
        p = find_output(Path(m.source), pair)
        if p is None:
            return None
        out = read_rgb_or_gray(p)
        if out.shape[:2] != vis.shape[:2]:
            raise FusionError(f"{p}: size {out.shape[1]}x{out.shape[0]} differs from the visible image "
                              f"{vis.shape[1]}x{vis.shape[0]} of {pair.key}")
        return out
    if m.kind == "teacher-mean":
        parts = [cache.get(x) for x in m.members]
        if any(p is None for p in parts):
            return None
        return np.clip(np.rint(np.mean([M.to_gray(p) for p in parts], axis=0)), 0, 255).astype(np.uint8)
    if m.kind == "teacher-select":
        from fusion_ros.train.targets import select_target, source_lumas

        parts = [cache.get(x) for x in m.members]
        if any(p is None for p in parts):
            return None
        ys = np.stack([M.to_gray(p) for p in parts]).astype(np.float32) / 255.0
        target, _ = select_target(ys, *source_lumas(ir_to_u8(ir), vis), m.select)
        return np.clip(np.rint(target * 255.0), 0, 255).astype(np.uint8)
    if m.kind == BLEND:
        th = ir_to_u8(misaligned_thermal(m, ir))
        return np.clip(np.rint(0.5 * M.to_gray(vis) + 0.5 * M.to_gray(th)), 0, 255).astype(np.uint8)
    if m.kind == "student":
        m.fuser.reset()
        return m.fuser.step(misaligned_thermal(m, ir), vis)
    raise ConfigError(f"unknown method kind {m.kind!r}")


def misaligned_thermal(m: Method, ir: np.ndarray) -> np.ndarray:
    """The thermal input ``m`` fuses: ``ir`` itself, or rotated and shifted by the method's misalignment."""
    return shift_image(ir, m.misalign_px, m.misalign_deg) if (m.misalign_px or m.misalign_deg) else ir


def shift_image(img: np.ndarray, px: float, deg: float = 0.0) -> np.ndarray:
    """``img`` rotated by ``deg`` degrees about its centre, then translated by ``px`` pixels right and down (edges
    replicated), like a thermal calibration error."""
    h, w = img.shape[:2]
    mat = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), deg, 1.0).astype(np.float32)
    mat[:, 2] += px
    return cv2.warpAffine(img, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def as_rgb(img: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """A method output as RGB: a grey luma gets the visible chroma."""
    return recolour(img, vis) if img.ndim == 2 else img


def _score(key: str, outs: dict[str, np.ndarray], ir: np.ndarray, vis: np.ndarray,
           metrics: tuple[str, ...]) -> tuple[str, dict[str, dict[str, float]]]:
    return key, M.compute_many(outs, ir, vis, metrics)


def _worker_init() -> None:
    cv2.setNumThreads(1)


def _mean_rows(rows: list[dict[str, float]], metrics: tuple[str, ...]) -> dict[str, float]:
    out = {"n": len(rows)}
    for k in metrics:
        out[k] = float(np.mean([r[k] for r in rows])) if rows else float("nan")
    return out


def evaluate_pairs(pairs_root: str | Path, methods: list[Method], cfg: EvalConfig = EvalConfig(),
                   progress: bool = True) -> dict:
    """Score every method on every pair under ``pairs_root``.

    Args:
        pairs_root: a dataset folder or a tree of them.
        methods: prepared methods (see :func:`prepare_methods`).
        cfg: evaluation settings.
        progress: tqdm bar on stderr.

    Returns:
        JSON-ready dict: ``per_image`` rows, ``per_dataset[dataset][method]`` and ``overall[method]`` means
        (``overall`` over the pairs every method has, so rows compare the same images; ``n`` says how many),
        ``speed_ms`` for students, plus ``grid`` (pairs and images for the report, not serialised).
    """
    pairs = find_pairs(pairs_root)
    jobs = cfg.jobs or min(2, os.cpu_count() or 1)
    folders = [Path(m.source) for m in methods if m.kind == "folder"]
    complete = [p for p in pairs if all(find_output(f, p) is not None for f in folders)]
    # Show pairs that every method has, so no grid cell is empty (unless no pair is complete).
    grid_keys = _grid_pairs(complete or pairs, cfg.grid_images)
    grid: list[tuple[Pair, np.ndarray, np.ndarray, dict[str, np.ndarray | None]]] = []
    step_ms: dict[str, list[float]] = {m.name: [] for m in methods if m.kind == "student"}
    results: dict[str, dict[str, dict[str, float]]] = {}
    pool = ProcessPoolExecutor(jobs, initializer=_worker_init,
                               mp_context=__import__("multiprocessing").get_context("spawn")) if jobs > 1 else None
    pending: list[Future] = []
    it = pairs
    if progress:
        from tqdm import tqdm

        it = tqdm(pairs, desc="eval", unit="pair")
    t_start = time.perf_counter()
    try:
        for pair in it:
            ir, vis = read_ir(pair.ir_path), read_vis(pair.vi_path)
            if ir.shape[:2] != vis.shape[:2]:
                raise FusionError(f"{pair.key}: IR {ir.shape[:2]} and VIS {vis.shape[:2]} differ in size; "
                                  "eval expects registered pairs")
            outs: dict[str, np.ndarray | None] = {}
            for m in methods:
                t0 = time.perf_counter()
                outs[m.name] = method_output(m, pair, ir, vis, outs)
                if m.kind == "student":
                    step_ms[m.name].append((time.perf_counter() - t0) * 1e3)
            if pair.key in grid_keys:
                grid.append((pair, ir, vis, dict(outs)))
            # Send grey images only: the metrics work on luma and this halves the pickling.
            g_outs = {k: M.to_gray(v).astype(np.uint8) for k, v in outs.items() if v is not None}
            g_ir = ir_to_u8(ir)
            g_vis = M.to_gray(vis).astype(np.uint8)
            if pool is None:
                k, r = _score(pair.key, g_outs, g_ir, g_vis, cfg.metrics)
                results[k] = r
            else:
                pending.append(pool.submit(_score, pair.key, g_outs, g_ir, g_vis, cfg.metrics))
                if len(pending) > 4 * jobs:
                    k, r = pending.pop(0).result()
                    results[k] = r
        for f in pending:
            k, r = f.result()
            results[k] = r
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    elapsed = time.perf_counter() - t_start

    per_image = []
    by_key = {p.key: p for p in pairs}
    for key, res in results.items():
        for name, vals in res.items():
            per_image.append({"dataset": by_key[key].dataset, "image": by_key[key].stem, "method": name, **vals})
    names = [m.name for m in methods]
    datasets = sorted({p.dataset for p in pairs})
    per_dataset = {}
    for ds in datasets:
        per_dataset[ds] = {n: _mean_rows([r for r in per_image if r["dataset"] == ds and r["method"] == n],
                                                cfg.metrics) for n in names}
    common = [k for k, r in results.items() if all(n in r for n in names)]
    overall = {n: _mean_rows([results[k][n] for k in common], cfg.metrics) for n in names}
    speed = {}
    for m in methods:
        if m.kind == "student":
            speed[m.name] = {"fuse_median_ms_dev_sizes": round(statistics.median(step_ms[m.name]), 2)
                             if step_ms[m.name] else None}
            if cfg.speed:
                speed[m.name].update(_bench_student(m, cfg))
    return {
        "pairs_root": str(pairs_root), "n_pairs": len(pairs), "n_common": len(common),
        "metrics": list(cfg.metrics), "methods": {m.name: m.describe() for m in methods},
        "auto_align": cfg.auto_align,
        "baselines": [m.name for m in methods if m.is_baseline],
        "per_dataset": per_dataset, "overall": overall, "speed_ms": speed,
        "per_image": per_image, "seconds": round(elapsed, 1), "jobs": jobs,
        "grid": grid,
    }


def ir_to_u8(ir: np.ndarray) -> np.ndarray:
    """Thermal image in the metrics' uint8 range: 8-bit unchanged, 16-bit stretched min-max."""
    return ir if ir.dtype == np.uint8 else cv2.normalize(ir, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def _bench_student(m: Method, cfg: EvalConfig) -> dict:
    """The inference bench of a student at 480x640 (median of 20 runs after 3 warm-up runs)."""
    try:
        from fusion_ros.engine.bench import bench_one

        rows = bench_one(cfg.backend, m.source, [(480, 640)], runs=20, warmup=3, precision="fp32",
                         threads=cfg.threads)
        return {"bench_480x640_median_ms": rows[0]["median_ms"], "bench_backend": rows[0].get("backend", cfg.backend)}
    except (ImportError, FusionError, RuntimeError) as exc:
        log.warning("speed column unavailable for %s: %s", m.name, exc)
        return {}


def _grid_pairs(pairs: list[Pair], n: int) -> set[str]:
    """Up to ``n`` pairs, round-robin over datasets so each dataset shows up."""
    by_ds: dict[str, list[Pair]] = {}
    for p in pairs:
        by_ds.setdefault(p.dataset, []).append(p)
    chosen: list[str] = []
    i = 0
    while len(chosen) < n and any(i < len(v) for v in by_ds.values()):
        for v in by_ds.values():
            if i < len(v) and len(chosen) < n:
                chosen.append(v[i].key)
        i += 1
    return set(chosen)


def _load_clip(ir_src: Path, vi_src: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    irs = [f for _, f in iter_frames(ir_src, "ir")]
    vis = [f for _, f in iter_frames(vi_src, "vi")]
    n = min(len(irs), len(vis))
    if len(irs) != len(vis):
        log.warning("%s: %d IR vs %d VIS frames; using the first %d", ir_src.parent, len(irs), len(vis), n)
    return irs[:n], vis[:n]


VIDEO_QUALITY = ("Qabf", "SSIM", "VIF", "SF", "AG")


def evaluate_video(video_root: str | Path, methods: list[Method], max_frames: int = 0) -> dict:
    """Flicker, warping error and per-frame fusion quality per clip for the visible input, copy-ir, and every
    student with and without its streaming memory (DIS flow of the visible stream, shared by all rows).

    The per-frame quality (mean over the clip's frames of :data:`VIDEO_QUALITY`) shows what steadiness costs:
    a memory that lowered flicker by smearing the picture would lose it (and its texture, SF and AG).

    Args:
        video_root: a clip folder or a folder of clips (frame folders or ir.mp4 + vi.mp4).
        methods: prepared methods; only students (and copy-ir) can run on clips.
        max_frames: use at most this many frames per clip, 0 = all.

    Returns:
        {"clips": {clip: {row: TemporalResult dict + metric means}}, "mean": {row: {"flicker", "warping_error", metrics}}}.
    """
    from fusion_ros.eval.metrics import compute_many
    from fusion_ros.eval.temporal import compute_flow, temporal_metrics

    clips = {}
    for name, ir_src, vi_src in find_clips(video_root):
        irs, vis = _load_clip(ir_src, vi_src)
        if max_frames:
            irs, vis = irs[:max_frames], vis[:max_frames]
        flow = compute_flow(vis)
        frames = {"visible": vis, "copy-ir": [ir_to_u8(ir) for ir in irs]}
        for m in methods:
            if m.kind != "student":
                continue
            for mem in (True, False):
                fuser = m.fuser
                old = fuser.cfg
                fuser.configure(replace(old, use_memory=mem))
                fuser.reset()
                frames[f"{m.name} ({'memory' if mem else 'no memory'})"] = [fuser.step(t, v) for t, v in zip(irs, vis)]
                fuser.configure(old)
        rows = {k: temporal_metrics(f, vis, flow).to_dict() for k, f in frames.items()}
        per_frame = [compute_many({k: f[i] for k, f in frames.items()}, frames["copy-ir"][i], vis[i], VIDEO_QUALITY)
                     for i in range(len(vis))]
        for k, row in rows.items():
            row.update({q: float(np.mean([pf[k][q] for pf in per_frame])) for q in VIDEO_QUALITY})
        clips[name] = rows
        log.info("clip %s: %s", name, {k: round(v["flicker"], 3) for k, v in rows.items()})
    keys = ("flicker", "warping_error") + VIDEO_QUALITY
    mean = {r: {k: float(np.mean([c[r][k] for c in clips.values()])) for k in keys} for r in next(iter(clips.values()))}
    return {"video_root": str(video_root), "clips": clips, "mean": mean}


def evaluate_detection(pairs_root: str | Path, methods: list[Method], detector=None) -> dict:
    """mAP@0.5 of a frozen RGB detector on the visible image and on each method's fused image.

    Only pairs whose dataset folder has a ``labels/`` folder (YOLO txt) count. A method that has no output
    for some labelled pair is left out (its mAP would be over other images).

    Args:
        pairs_root: pairs root (e.g. pairs/dev or pairs/dev/msrs).
        methods: prepared methods.
        detector: callable RGB -> detections; default SSD-MobileNet-v2-COCO.

    Returns:
        {"n_images": N, "rows": {"visible": {person, bicycle, car, mAP}, method: {...}}, "skipped": [...]}.
    """
    from fusion_ros.eval.detection import SSDMobileNetDetector, evaluate_map, read_yolo_labels

    pairs = [p for p in find_pairs(pairs_root) if (p.vi_path.parent.parent / "labels").is_dir()]
    if not pairs:
        raise FusionError(f"no labelled pairs under {pairs_root}: --detect needs <dataset>/labels/<stem>.txt (YOLO)")
    detector = detector or SSDMobileNetDetector()
    labels, dets = {}, {"visible": {}}
    skipped = set()
    for pair in pairs:
        ir, vis = read_ir(pair.ir_path), read_vis(pair.vi_path)
        labels[pair.key] = read_yolo_labels(pair.vi_path.parent.parent / "labels" / f"{pair.stem}.txt",
                                            vis.shape[1], vis.shape[0])
        dets["visible"][pair.key] = detector(vis)
        outs: dict[str, np.ndarray | None] = {}
        for m in methods:
            if m.kind == "copy-vis":
                continue
            outs[m.name] = method_output(m, pair, ir, vis, outs)
            if outs[m.name] is None:
                skipped.add(m.name)
                continue
            img = outs[m.name]
            rgb = np.repeat(img[..., None], 3, 2) if m.kind == "copy-ir" else as_rgb(img, vis)
            dets.setdefault(m.name, {})[pair.key] = detector(rgb)
    rows = {name: evaluate_map(d, labels) for name, d in dets.items() if name not in skipped}
    return {"pairs_root": str(pairs_root), "n_images": len(pairs), "rows": rows, "skipped": sorted(skipped)}


def misalignment_drop(aligned: dict, shifted: dict, methods: list[Method],
                      metrics: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Relative drop (aligned - shifted) / aligned of each metric over all pairs, for every method whose thermal
    input was shifted (the students and the 50/50 blend).

    ``aligned`` and ``shifted`` are :func:`evaluate_pairs` results of the same methods without and with the shift.
    The cached teacher outputs exist for aligned inputs only, so teachers have no row here.
    """
    out = {}
    for m in methods:
        if m.kind not in _SHIFTED_KINDS or m.name not in aligned["overall"] or m.name not in shifted["overall"]:
            continue
        base, row = aligned["overall"][m.name], shifted["overall"][m.name]
        out[m.name] = {k: round((base[k] - row[k]) / base[k], 4) for k in metrics if base.get(k)}
    return out


def evaluate_misalignment(pairs_root: str | Path, methods: list[Method], cfg: EvalConfig,
                          progress: bool = True) -> dict:
    """:func:`evaluate_pairs` with the shift of ``cfg``, plus the aligned run of the shifted methods and their drop."""
    shifted = evaluate_pairs(pairs_root, methods, cfg, progress)
    moved = [m for m in methods if m.kind in _SHIFTED_KINDS]
    for m in moved:
        m.misalign_px, m.misalign_deg = 0.0, 0.0
    try:
        aligned = evaluate_pairs(pairs_root, moved, replace(cfg, misalign_px=0.0, misalign_deg=0.0, grid_images=0,
                                                            speed=False), progress)
    finally:
        for m in moved:
            m.misalign_px, m.misalign_deg = cfg.misalign_px, cfg.misalign_deg
    shifted["misalign_drop"] = misalignment_drop(aligned, shifted, moved, cfg.metrics)
    return shifted
