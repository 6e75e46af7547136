"""rosbag2 (mcap or sqlite3) -> aligned training pairs, with the node's pairing rule.

Messages of the two topics are read in recording order (:func:`fusion_ros.io.bag.read_messages`), decoded with
the node's codec and fed to the node's :class:`~fusion_ros.pipeline.stream.FusionStream` (header stamps for
pairing, the bag's log time as arrival time). Each pair is written as the network would see it when the node fuses it
(:meth:`FusionStream.network_inputs`: the node's AGC, once per fused pair, and registration), so the pairs are
the node's by construction. A malformed message is skipped and counted. Output: ``<out>/ir/<i>.png`` (8-bit) and ``<out>/vi/<i>.png``
(RGB), numbered in RGB stamp order, so the folder is both a pair folder and a frame-folder clip for
stage II. ``<out>/pairs.csv`` records the stamps of every pair.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np

from fusion_ros.errors import FusionError

__all__ = ["extract_pairs"]

log = logging.getLogger(__name__)


def extract_pairs(bag: str | Path, thermal_topic: str, rgb_topic: str, out: str | Path, slop_s: float = 0.05,
                  every: int = 1, fuser_cfg=None, progress: bool = True) -> int:
    """Write the synchronised pairs of a bag as a pair folder.

    Args:
        bag: rosbag2 folder or file.
        thermal_topic: thermal Image topic (mono8/8UC1/mono16/16UC1).
        rgb_topic: visible Image topic (rgb8, bgr8, mono8, yuv422, ...).
        out: output folder.
        slop_s: largest stamp difference of a pair (the node's ``approximate_sync_slop_s``).
        every: keep every N-th pair.
        fuser_cfg: :class:`fusion_ros.pipeline.fuser.FuserConfig` for AGC and registration (default settings if None).
        progress: tqdm bar.

    Returns:
        Number of pairs written.
    """
    from tqdm import tqdm

    from fusion_ros.io.bag import IMAGE_TYPE, read_messages
    from fusion_ros.pipeline.fuser import Fuser, FuserConfig
    from fusion_ros.pipeline.stream import FusionStream
    from fusion_ros.pipeline.sync import SyncConfig
    from fusion_ros.pipeline.image_codec import rgb_from_message, stamp_seconds, thermal_from_message

    if every < 1:
        raise FusionError(f"every={every} must be >= 1")
    # The queue must hold every RGB frame that can wait for a thermal one; offline there is no latency bound.
    stream = FusionStream(Fuser(None, fuser_cfg or FuserConfig()),
                          sync_cfg=SyncConfig(approximate_sync_slop_s=slop_s, queue_size=100, sync_max_wait_s=10.0))
    out = Path(out)
    (out / "ir").mkdir(parents=True, exist_ok=True)
    (out / "vi").mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    n_pairs = 0
    malformed = 0

    def write(jobs) -> None:
        nonlocal n_pairs
        for job in jobs:
            inputs = stream.network_inputs(job)
            if inputs is None:
                continue
            n_pairs += 1
            if (n_pairs - 1) % every:
                continue
            thermal, visible = inputs
            name = f"{len(rows):06d}"
            cv2.imwrite(str(out / "ir" / f"{name}.png"), np.clip(np.rint(thermal[0, 0] * 255.0), 0, 255).astype(np.uint8))
            vis = np.clip(np.rint(visible[0].transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
            cv2.imwrite(str(out / "vi" / f"{name}.png"), cv2.cvtColor(vis, cv2.COLOR_RGB2BGR))
            rows.append({"name": name, "rgb_stamp": f"{job.stamp:.9f}", "thermal_stamp": f"{job.thermal_stamp:.9f}"})

    bar = tqdm(desc="bag", unit="msg", disable=not progress)
    for topic, t_ns, msg in read_messages(bag, {thermal_topic: IMAGE_TYPE, rgb_topic: IMAGE_TYPE}):
        bar.update(1)
        t_log = t_ns * 1e-9
        is_thermal = topic == thermal_topic
        try:
            img = thermal_from_message(msg) if is_thermal else np.ascontiguousarray(rgb_from_message(msg))
        except Exception as exc:        # one odd frame in a recording must not end the extraction
            malformed += 1
            log.warning("skipping malformed message on %s (%s): %s", topic, getattr(exc, "kind", type(exc).__name__), exc)
            continue
        if is_thermal:
            write(stream.add_thermal(stamp_seconds(msg.header.stamp), img, now=t_log))
        else:
            write(stream.add_rgb(stamp_seconds(msg.header.stamp), img, now=t_log))
    write(stream.flush())
    bar.close()
    with (out / "pairs.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["name", "rgb_stamp", "thermal_stamp"])
        w.writeheader()
        w.writerows(rows)
    log.info("%s: %d pairs written to %s (%d RGB frames without thermal within %.3f s, %d malformed messages "
             "skipped)", bag, len(rows), out, stream.sync.stats.unpaired_rgb, slop_s, malformed)
    return len(rows)
