"""Robustness check helper of fusion-ros eval: --misalign."""

from __future__ import annotations


def test_misalign_shifts_student_thermal_only() -> None:
    """The robustness check moves the thermal input by the asked amount; the sources scored stay aligned."""
    import numpy as np

    from fusion_ros.eval.runner import shift_image

    img = np.zeros((20, 30), np.uint8)
    img[5, 7] = 255
    out = shift_image(img, 3.0)
    assert out[8, 10] == 255 and out[5, 7] == 0
    assert np.array_equal(shift_image(img, 0.0), img)


def test_misalign_rotates_about_the_centre_before_the_shift() -> None:
    import numpy as np
    import pytest

    from fusion_ros.errors import ConfigError
    from fusion_ros.eval.runner import EvalConfig, shift_image

    img = np.zeros((41, 41), np.uint8)
    img[20, 30] = 255                                   # 10 px right of the centre (20, 20)
    out = shift_image(img, 0.0, 90.0)                   # counter-clockwise on screen: right of centre goes up
    assert out[10, 20] == 255 and out[20, 30] == 0
    assert shift_image(img, 2.0, 90.0)[12, 22] == 255   # then 2 px right and down
    assert EvalConfig(misalign_deg=2.0).misaligned and not EvalConfig().misaligned
    with pytest.raises(ConfigError, match="misalign_deg"):
        EvalConfig(misalign_deg=45.0)


def test_misalign_run_reports_the_drop_of_students_and_of_the_blend(tmp_path) -> None:
    """A shifted run scores the blend reference and the student shifted and aligned; their drops are reported and a
    3 px shift costs the blend Qabf when both images carry the same structure."""
    import cv2
    import numpy as np

    from fusion_ros.eval.runner import EvalConfig, Method, evaluate_misalignment, prepare_methods

    rng = np.random.default_rng(0)
    for sub in ("ir", "vi"):
        (tmp_path / "set" / sub).mkdir(parents=True)
    for i in range(2):
        base = cv2.GaussianBlur(rng.integers(0, 255, (64, 80), dtype=np.uint8), (0, 0), 2)
        cv2.imwrite(str(tmp_path / "set" / "ir" / f"{i}.png"), base)
        cv2.imwrite(str(tmp_path / "set" / "vi" / f"{i}.png"), cv2.merge([base] * 3))
    cfg = EvalConfig(jobs=1, metrics=("Qabf", "SSIM"), grid_images=0, speed=False, misalign_px=3.0)
    methods = prepare_methods([Method("lite", "student", "lite")], cfg)
    assert {m.name for m in methods} >= {"lite", "blend-50", "copy-vis"}
    result = evaluate_misalignment(tmp_path / "set", methods, cfg, progress=False)
    drop = result["misalign_drop"]
    assert set(drop) == {"lite", "blend-50"} and drop["blend-50"]["Qabf"] > 0.0
    assert all(m.misalign_px == 3.0 for m in methods if m.kind in ("student", "blend-50"))


def test_a_rotation_alone_is_a_misaligned_run(tmp_path) -> None:
    """``fusion-ros eval --misalign-deg 3`` without a shift scores the blend reference and reports the drops."""
    import json
    import subprocess
    import sys

    import cv2
    import numpy as np

    rng = np.random.default_rng(1)
    for sub in ("ir", "vi"):
        (tmp_path / "set" / sub).mkdir(parents=True)
    base = cv2.GaussianBlur(rng.integers(0, 255, (64, 80), dtype=np.uint8), (0, 0), 2)
    cv2.imwrite(str(tmp_path / "set" / "ir" / "0.png"), base)
    cv2.imwrite(str(tmp_path / "set" / "vi" / "0.png"), cv2.merge([base] * 3))
    out = subprocess.run([sys.executable, "-m", "fusion_ros.cli", "eval", "--pairs", str(tmp_path / "set"), "--methods",
                          "lite", "--metrics", "Qabf", "--misalign-deg", "3", "--no-speed", "--jobs", "1", "--json",
                          "--quiet", "--grid", "0"], capture_output=True, text=True, check=True).stdout
    drop = json.loads(out)["misalign_drop"]
    assert set(drop) == {"student-lite", "blend-50"} and drop["blend-50"]["Qabf"] > 0.0


def test_the_automatic_shift_makes_the_student_lose_less_than_the_blend(shared_dir, tmp_path) -> None:
    """Real RoadScene pairs, thermal shifted 8 px: with the pipeline's automatic shift the student's Qabf and SSIM
    drop less than the 50/50 blend's; the network alone (auto_align off) drops more than with it."""
    import shutil

    from fusion_ros.eval.runner import EvalConfig, Method, evaluate_misalignment, prepare_methods
    from fusion_ros.io.pairs import find_pairs

    for sub in ("ir", "vi"):
        (tmp_path / "set" / sub).mkdir(parents=True)
    for p in find_pairs(shared_dir / "data" / "pairs" / "dev" / "roadscene")[:6]:
        shutil.copy(p.ir_path, tmp_path / "set" / "ir" / p.ir_path.name)
        shutil.copy(p.vi_path, tmp_path / "set" / "vi" / p.vi_path.name)
    drops = {}
    for auto in (True, False):
        cfg = EvalConfig(jobs=1, metrics=("Qabf", "SSIM"), grid_images=0, speed=False, misalign_px=8.0,
                         auto_align=auto)
        methods = prepare_methods([Method("lite", "student", "lite")], cfg)
        drops[auto] = evaluate_misalignment(tmp_path / "set", methods, cfg, progress=False)["misalign_drop"]
    print("relative drops with / without the automatic shift:", drops)
    for metric in ("Qabf", "SSIM"):
        assert drops[True]["lite"][metric] < drops[True]["blend-50"][metric], metric
        assert drops[True]["lite"][metric] < drops[False]["lite"][metric], metric
