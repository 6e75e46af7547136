"""CLI commands of the training stage: ``fusion-ros train``, ``fusion-ros teachers cache``, ``fusion-ros dataset from-bag``."""

from __future__ import annotations

import argparse

__all__ = ["register"]

TRAIN_EPILOG = """Relative paths (out_dir, export_path, cache_dir, data) are taken from the working directory;
'shared:...' paths from the shared data folder. An existing model (export_path, or a previous run in
out_dir) is replaced only with --force.

examples:
  fusion-ros train --config config/train/lite.yaml
  fusion-ros train --config config/train/lite.yaml --resume
  fusion-ros train --config config/train/default.yaml --set steps=200 --set out_dir=runs/try --set export_path=none
  torchrun --nproc_per_node=4 -m fusion_ros.cli train --config config/train/default.yaml
"""

TEACHERS_EPILOG = """examples:
  fusion-ros teachers cache --config config/train/lite.yaml
  fusion-ros teachers cache --set teachers=[SeAFusion,IFCNN,AUIF] --set teacher_weights=[1,1,0.5]
"""

BAG_EPILOG = """examples:
  fusion-ros dataset from-bag rig.mcap --thermal-topic /thermal/image_raw --rgb-topic /rgb/image_raw --out data/rig
  fusion-ros dataset from-bag rig_bag/ --thermal-topic /lwir/image --rgb-topic /cam/image --slop 0.02 --every 5 --out data/rig
"""


def _config(args):
    from fusion_ros.config import parse_set_args
    from fusion_ros.train.config import load_train_config

    return load_train_config(args.config, parse_set_args(args.set))


def check_train_outputs(cfg, resume: bool, force: bool) -> None:
    """Refuse a run that would replace a model without ``--force``: the export at ``export_path``, or a previous run in ``out_dir``.

    ``--resume`` continues the run in ``out_dir`` (its own export is replaced at the end); ``export_path`` still needs ``--force``.
    """
    from fusion_ros.errors import ConfigError
    from fusion_ros.model.artifact import existing_files
    from fusion_ros.train.config import resolve_path

    if force:
        return
    out_dir = resolve_path(cfg.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"out_dir: '{cfg.out_dir}' ({out_dir}) is a file; --set out_dir to a folder")
    if cfg.export_path and cfg.export_path.lower() not in ("none", "null"):
        found = existing_files(resolve_path(cfg.export_path))
        if found:
            raise ConfigError(f"export_path: '{cfg.export_path}' holds a model ({', '.join(str(p) for p in found)}) that this run "
                              "would replace; pass --force to replace it, or --set export_path=none (or another path)")
    previous = [out_dir / n for n in ("last.pt", f"fusion_{cfg.model}.onnx") if (out_dir / n).exists()]
    if previous and not resume:
        raise ConfigError(f"out_dir: '{cfg.out_dir}' holds a previous run ({', '.join(p.name for p in previous)}); "
                          "pass --resume to continue it, --force to start over in it, or --set out_dir=<new folder>")


def _cmd_train(args) -> int:
    from fusion_ros.train.config import check_data_paths
    from fusion_ros.train.trainer import train

    cfg = _config(args)
    check_data_paths(cfg)
    check_train_outputs(cfg, resume=args.resume, force=args.force)
    out = train(cfg, resume=args.resume, progress=not args.no_progress)
    if out is not None:
        print(out)
    return 0


def _cmd_teachers_cache(args) -> int:
    from fusion_ros.train.config import resolve_path
    from fusion_ros.train.data import find_pairs
    from fusion_ros.train.teachers import build_cache

    cfg = _config(args)
    pairs = [p for root in cfg.pairs for p in find_pairs(resolve_path(root))]
    folder = build_cache(cfg, pairs, progress=not args.no_progress)
    print(folder)
    return 0


def _cmd_from_bag(args) -> int:
    from pathlib import Path

    from fusion_ros.errors import ConfigError
    from fusion_ros.train.bag import extract_pairs

    bag, out = Path(args.bag), Path(args.out)
    if not bag.exists():
        raise ConfigError(f"bag {bag}: no such file or folder; pass a rosbag2 folder or a .mcap/.db3 file")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder for the pairs")
    if out.resolve() == bag.resolve() or (bag.is_dir() and out.resolve().is_relative_to(bag.resolve())):
        raise ConfigError(f"--out {out} is inside the bag {bag}; choose an --out outside it")
    n = extract_pairs(args.bag, args.thermal_topic, args.rgb_topic, args.out, slop_s=args.slop, every=args.every,
                      progress=not args.no_progress)
    print(f"{n} pairs -> {args.out}")
    return 0


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="training YAML (config/train/*.yaml); defaults = the lite recipe")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config field (repeatable), e.g. --set steps=500")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the example epilogs' line breaks."""


def register(subparsers) -> None:
    """Add this stage's commands to the ``fusion-ros`` parser."""
    fmt = _Formatter
    p = subparsers.add_parser("train", help="train the student: stage I images (teacher distillation), stage II video, export",
                              formatter_class=fmt, epilog=TRAIN_EPILOG)
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from <out_dir>/last.pt")
    p.add_argument("--force", action="store_true", help="replace the model at export_path, or a previous run in out_dir")
    p.set_defaults(func=_cmd_train)

    t = subparsers.add_parser("teachers", help="teacher-ensemble tools (cache statistics for training)", formatter_class=fmt,
                              epilog=TEACHERS_EPILOG)
    tsub = t.add_subparsers(dest="teachers_command", metavar="<action>")
    c = tsub.add_parser("cache", help="build (or complete) the teacher/backbone statistics cache", formatter_class=fmt,
                        epilog=TEACHERS_EPILOG)
    _add_config_args(c)
    c.set_defaults(func=_cmd_teachers_cache)

    d = subparsers.add_parser("dataset", help="training-data tools (rosbag2 -> aligned pairs)", formatter_class=fmt,
                              epilog=BAG_EPILOG)
    dsub = d.add_subparsers(dest="dataset_command", metavar="<action>")
    b = dsub.add_parser("from-bag", help="extract time-synchronised thermal/RGB pairs from a rosbag2 (mcap or sqlite3)",
                        formatter_class=fmt, epilog=BAG_EPILOG)
    b.add_argument("bag", help="rosbag2 folder or .mcap/.db3 file")
    b.add_argument("--thermal-topic", required=True, help="thermal sensor_msgs/Image topic")
    b.add_argument("--rgb-topic", required=True, help="visible sensor_msgs/Image topic")
    b.add_argument("--out", required=True, help="output folder: <out>/ir/*.png, <out>/vi/*.png (also a frame-folder clip)")
    b.add_argument("--slop", type=float, default=0.05, help="max |t_rgb - t_thermal| in seconds for a pair")
    b.add_argument("--every", type=int, default=1, help="keep every N-th pair")
    b.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    b.set_defaults(func=_cmd_from_bag)
