"""Registration of the thermal image onto the RGB pixel grid by a 3x3 homography (ROS-free).

Convention: the homography maps thermal pixel coordinates *after the thermal image has been resized to the
output (RGB) resolution* onto RGB pixel coordinates. So the identity means "the two cameras see the same
field of view": a plain resize. A calibration done at full resolution on both images gives this matrix
directly when both sensors have the same size; otherwise compose it with the resize
(``H_rgb_from_thermal @ inv(S)``, ``S = diag(W_rgb / w_th, H_rgb / h_th, 1)``).

Example:
    >>> import numpy as np
    >>> reg = Registration(RegistrationConfig())
    >>> reg.warp(np.zeros((256, 320), np.float32), (640, 480)).shape
    (480, 640)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from fusion_ros.errors import ConfigError, ShapeError

__all__ = ["IDENTITY", "RegistrationConfig", "Registration", "warp_thermal"]

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class RegistrationConfig:
    """Thermal-to-RGB registration."""

    # Row-major 3x3 homography (9 values), thermal (resized to RGB size) -> RGB pixels; identity = resize only.
    homography: tuple[float, ...] = field(default=IDENTITY, metadata={
        "doc": "row-major 3x3 homography (9 values) from thermal pixels, resized to the RGB size, to RGB pixels; "
               "identity = resize only"})

    def __post_init__(self) -> None:
        if len(self.homography) != 9:
            raise ConfigError(f"homography needs 9 values (row-major 3x3), got {len(self.homography)}")
        m = np.asarray(self.homography, np.float64).reshape(3, 3)
        if not np.all(np.isfinite(m)) or abs(np.linalg.det(m)) < 1e-9:
            raise ConfigError(f"homography {list(self.homography)} is singular or not finite; "
                              "use the identity [1,0,0, 0,1,0, 0,0,1] for co-aligned cameras")

    @property
    def is_identity(self) -> bool:
        return np.allclose(np.asarray(self.homography, np.float64), np.asarray(IDENTITY))


def warp_thermal(thermal: np.ndarray, size: tuple[int, int], cfg: RegistrationConfig,
                 ref_size: tuple[int, int] | None = None, replicate_border: bool = False) -> np.ndarray:
    """Warp a thermal image onto a ``size`` grid.

    Args:
        thermal: (h, w) float32 (or uint8/uint16) thermal image.
        size: output (width, height).
        cfg: registration settings.
        ref_size: (width, height) of the RGB image the homography refers to, when ``size`` is a different
            inference resolution; None = ``size``.
        replicate_border: fill pixels mapped from outside the thermal image with its nearest edge pixel instead of 0
            (for a small correction of co-aligned cameras, where a black strip would read as an edge).

    Returns:
        (height, width) array of ``thermal``'s dtype; pixels mapped from outside the thermal image are 0 (or the
        replicated border).

    Raises:
        ShapeError: ``thermal`` not 2-D.
    """
    if thermal.ndim != 2:
        raise ShapeError(f"thermal must be (h, w), got shape {thermal.shape}")
    w_out, h_out = size
    h_in, w_in = thermal.shape
    if cfg.is_identity:
        if (w_in, h_in) == (w_out, h_out):
            return thermal
        return cv2.resize(thermal, (w_out, h_out), interpolation=cv2.INTER_LINEAR)
    rw, rh = ref_size or size
    # thermal px -> (resize to RGB) -> homography -> (RGB to output size)
    s_in = np.diag([rw / w_in, rh / h_in, 1.0])
    s_out = np.diag([w_out / rw, h_out / rh, 1.0])
    m = s_out @ np.asarray(cfg.homography, np.float64).reshape(3, 3) @ s_in
    border = cv2.BORDER_REPLICATE if replicate_border else cv2.BORDER_CONSTANT
    return cv2.warpPerspective(thermal, m, (w_out, h_out), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)


class Registration:
    """Module API over :func:`warp_thermal`.

    Args:
        cfg: registration settings.
    """

    def __init__(self, cfg: RegistrationConfig = RegistrationConfig()) -> None:
        self.cfg = cfg

    def warp(self, thermal: np.ndarray, size: tuple[int, int], ref_size: tuple[int, int] | None = None) -> np.ndarray:
        """See :func:`warp_thermal`."""
        return warp_thermal(thermal, size, self.cfg, ref_size)

    def __repr__(self) -> str:
        return f"Registration(homography={list(self.cfg.homography)})"
