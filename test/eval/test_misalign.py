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
