"""Report files of ``fusion-ros eval --report DIR``: Markdown tables, per-image CSV, image grid, flicker plot."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import cv2
import numpy as np

from fusion_ros.eval.data import recolour

__all__ = ["markdown_tables", "write_report", "write_csv", "write_grid", "write_flicker_plot", "format_value"]

log = logging.getLogger(__name__)

_DIGITS = {"EN": 3, "SD": 2, "SF": 2, "AG": 3, "MI": 3, "SCD": 3, "VIF": 3, "Qabf": 3, "SSIM": 3}


def format_value(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}"


def _table(rows: dict[str, dict[str, float]], cols: list[str], baselines: set[str], lower_better: set[str] = frozenset(),
           extra: dict[str, str] | None = None, extra_name: str = "") -> list[str]:
    """Markdown table, one row per method; the best non-baseline value of each column in bold."""
    real = [n for n in rows if n not in baselines]
    best = {}
    for c in cols:
        vals = [rows[n].get(c) for n in real]
        vals = [v for v in vals if v is not None and not math.isnan(v)]
        if vals:
            best[c] = min(vals) if c in lower_better else max(vals)
    with_n = any("n" in r for r in rows.values())
    head = ["method"] + (["n"] if with_n else []) + [*cols] + ([extra_name] if extra is not None else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for n, r in rows.items():
        cells = [f"{n} (baseline)" if n in baselines else n] + ([str(int(r.get("n", 0)))] if with_n else [])
        for c in cols:
            s = format_value(r.get(c), _DIGITS.get(c, 3))
            if c in best and r.get(c) is not None and n not in baselines and abs(r[c] - best[c]) < 1e-12:
                s = f"**{s}**"
            cells.append(s)
        if extra is not None:
            cells.append(extra.get(n, "–"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown_tables(result: dict) -> str:
    """All tables of an eval result as Markdown."""
    out = []
    base = set(result.get("baselines", []))
    if "overall" in result:
        cols = result["metrics"]
        speed = {n: format_value(v.get("bench_480x640_median_ms"), 1) for n, v in result.get("speed_ms", {}).items()}
        out += [f"### All datasets ({result['n_common']} pairs every method has, of {result['n_pairs']} under "
                f"`{result['pairs_root']}`)", "",
                "Higher is better for every metric; bold = best real fuser (baselines excluded). "
                "ms = network median at 480x640 from the bench (students only).", ""]
        out += _table(result["overall"], cols, base, extra=speed, extra_name="ms") + [""]
        for ds, rows in result["per_dataset"].items():
            rows = {n: r for n, r in rows.items() if r.get("n", 0) > 0}
            out += [f"### {ds}", ""] + _table(rows, cols, base) + [""]
    if "video" in result:
        v = result["video"]
        out += [f"### Temporal stability (`{v['video_root']}`, mean over {len(v['clips'])} clips)", "",
                "flicker = mean |F_t - warp(F_t-1)| / the same for the visible input (1 = as steady as the input); "
                "warping error = mean squared warped difference of the luma in [0, 1], x1000. Lower is better. "
                "Qabf, SSIM, VIF = per-frame fusion quality, SF, AG = per-frame texture (spatial frequency, average "
                "gradient), means over the frames (higher is better).", ""]
        quality = [q for q in ("Qabf", "SSIM", "VIF", "SF", "AG") if all(q in r for r in v["mean"].values())]
        rows = {n: {"flicker": r["flicker"], "warp_x1000": r["warping_error"] * 1e3, **{q: r[q] for q in quality}}
                for n, r in v["mean"].items()}
        out += _table(rows, ["flicker", "warp_x1000", *quality], {"visible", "copy-ir"},
                      lower_better={"flicker", "warp_x1000"}) + [""]
        clips = list(v["clips"])
        for key, title in (("flicker", "Flicker"), ("SF", "SF"), ("AG", "AG")):
            per_clip = {n: {clip: v["clips"][clip][n][key] for clip in clips}
                        for n in v["mean"] if all(key in v["clips"][c][n] for c in clips)}
            if per_clip:
                out += [f"{title} per clip:", ""] + _table(per_clip, clips, {"visible", "copy-ir"},
                                                           lower_better=set(clips) if key == "flicker" else set()) + [""]
    if "detection" in result:
        d = result["detection"]
        out += [f"### Detector mAP@0.5 (SSD-MobileNet-v2-COCO, 512x512; {d['n_images']} labelled images under "
                f"`{d['pairs_root']}`)", "", "The lift is fused minus visible. Bold = best fused image.", ""]
        rows = {n: r for n, r in d["rows"].items()}
        vis_map = rows.get("visible", {}).get("mAP", float("nan"))
        lift = {n: format_value(r["mAP"] - vis_map) for n, r in rows.items() if n != "visible"}
        out += _table({n: {k: v for k, v in r.items() if k != "n_images"} for n, r in rows.items()},
                      ["person", "bicycle", "car", "mAP"], {"visible", "copy-ir"}, extra=lift, extra_name="lift") + [""]
        if d.get("skipped"):
            out += [f"Not scored (no output for the labelled images): {', '.join(d['skipped'])}", ""]
    return "\n".join(out)


def write_csv(path: Path, per_image: list[dict], metrics: list[str]) -> None:
    """One row per (image, method) with every metric."""
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["dataset", "image", "method", *metrics])
        w.writeheader()
        for r in sorted(per_image, key=lambda r: (r["dataset"], r["image"], r["method"])):
            w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in w.fieldnames})


def _label(img: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((22, img.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text[:40], (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, img])


def write_grid(path: Path, grid: list, cell_hw: tuple[int, int] = (180, 240)) -> None:
    """Grid PNG: one row per pair, columns thermal | visible | each method (grey outputs recoloured).

    Every image is fitted into a ``cell_hw`` (height, width) cell with grey borders, so columns line up.
    """
    if not grid:
        return
    ch, cw = cell_hw

    def cell(img: np.ndarray, text: str) -> np.ndarray:
        rgb = np.repeat(img[..., None], 3, 2) if img.ndim == 2 else img
        h, w = rgb.shape[:2]
        s = min(ch / h, cw / w)
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        canvas = np.full((ch, cw, 3), 64, np.uint8)
        y, x = (ch - nh) // 2, (cw - nw) // 2
        canvas[y:y + nh, x:x + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        return _label(canvas, text)

    rows = []
    for pair, ir, vis, outs in grid:
        ir8 = ir if ir.dtype == np.uint8 else cv2.normalize(ir, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        cells = [cell(ir8, f"thermal {pair.key}"), cell(vis, "visible")]
        for name, img in outs.items():
            if name in ("copy-vis", "copy-ir"):
                continue
            if img is None:
                cells.append(cell(np.full((ch, cw), 128, np.uint8), f"{name}: none"))
            else:
                cells.append(cell(recolour(img, vis) if img.ndim == 2 else img, name))
        rows.append(np.hstack(cells))
    img = np.vstack(rows)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    log.info("grid %s: %d pairs x %d columns", path, len(rows), len(grid[0][3]) + 2)


def write_flicker_plot(path: Path, video: dict) -> None:
    """Per-frame flicker ratio of every row, one panel per clip (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = video["clips"]
    fig, axes = plt.subplots(1, len(clips), figsize=(5 * len(clips), 3.6), squeeze=False, sharey=True)
    for ax, (clip, rows) in zip(axes[0], clips.items()):
        for name, r in rows.items():
            ax.plot(range(1, len(r["per_frame_flicker"]) + 1), r["per_frame_flicker"], marker=".", label=name)
        ax.set_title(clip)
        ax.set_xlabel("frame t (vs t-1)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("flicker (fused / visible)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out_dir: str | Path, result: dict) -> list[Path]:
    """Write report.md, per_image.csv, grid.png, flicker.png (when a video part exists), results.json."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "report.md"]
    files[0].write_text("# Fusion evaluation\n\n" + markdown_tables(result) + "\n")
    if result.get("per_image"):
        write_csv(out / "per_image.csv", result["per_image"], result["metrics"])
        files.append(out / "per_image.csv")
    if result.get("grid"):
        write_grid(out / "grid.png", result["grid"])
        files.append(out / "grid.png")
    if result.get("video"):
        write_flicker_plot(out / "flicker.png", result["video"])
        files.append(out / "flicker.png")
    (out / "results.json").write_text(json.dumps(to_json(result), indent=1, allow_nan=False))
    files.append(out / "results.json")
    return files


def _clean(v):
    # Strict JSON has no NaN/Infinity: an undefined value (e.g. AP of a class without labels) becomes null.
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def to_json(result: dict) -> dict:
    """The result without its in-memory images (the grid), NaN as null, ready for ``json.dumps(allow_nan=False)``."""
    return _clean({k: v for k, v in result.items() if k != "grid"})
