"""A procedural night scene for the demo and the tests: what the product is for, in a few lines of OpenCV.

A dark street: warm pedestrians and cars move across. The thermal camera sees them clearly (hot bodies,
engines, tyres on a cool background); the RGB camera sees a near-black scene veiled by fog, with headlight
glare next to the pedestrians, so that they are barely visible there. Both sensors render the same
normalised world at their own resolution, so the identity homography (a resize) registers them.

Example:
    >>> scene = NightScene(SceneConfig(frames=2))
    >>> [(t.shape, t.dtype.name, r.shape) for t, r, _ in scene]
    [((256, 320), 'uint16', (480, 640, 3)), ((256, 320), 'uint16', (480, 640, 3))]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from fusion_ros.errors import ConfigError

__all__ = ["SceneConfig", "NightScene", "pedestrian_boxes"]


@dataclass(frozen=True)
class SceneConfig:
    """Scene settings."""

    rgb_size: tuple[int, int] = (640, 480)       # RGB (width, height), px
    thermal_size: tuple[int, int] = (320, 256)   # thermal (width, height), px
    fps: float = 30.0                            # frame rate, Hz (> 0)
    frames: int = 90                             # number of frames yielded (>= 1)
    pedestrians: int = 3                         # walking people (>= 0)
    cars: int = 1                                # cars with headlights (>= 0)
    fog: float = 0.5                             # fog density in [0, 1]
    seed: int = 0                                # RNG seed (noise, placement)

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ConfigError(f"fps={self.fps} must be > 0")
        if self.frames < 1:
            raise ConfigError(f"frames={self.frames} must be >= 1")
        if not 0.0 <= self.fog <= 1.0:
            raise ConfigError(f"fog={self.fog} must be in [0, 1]")
        for name in ("rgb_size", "thermal_size"):
            w, h = getattr(self, name)
            if w < 16 or h < 16:
                raise ConfigError(f"{name}={(w, h)} must be at least 16x16")


@dataclass
class _Walker:
    x: float          # normalised centre x
    y: float          # normalised foot y
    vx: float         # normalised units per second
    height: float     # normalised body height


def _walkers(cfg: SceneConfig) -> tuple[list[_Walker], list[_Walker]]:
    rng = np.random.default_rng(cfg.seed)
    peds = [_Walker(x=float(rng.uniform(0.15, 0.85)), y=float(rng.uniform(0.72, 0.86)),
                    vx=float(rng.choice([-1, 1]) * rng.uniform(0.04, 0.08)), height=float(rng.uniform(0.22, 0.3)))
            for _ in range(cfg.pedestrians)]
    cars = [_Walker(x=float(rng.uniform(0.1, 0.9)), y=0.7 - 0.04 * i, vx=float(rng.choice([-1, 1]) * 0.12),
                    height=0.14) for i in range(cfg.cars)]
    return peds, cars


def _wrap(x: float) -> float:
    return (x + 0.2) % 1.4 - 0.2


def pedestrian_boxes(cfg: SceneConfig, t: float, size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Pixel boxes (x0, y0, x1, y1) of the pedestrians at time ``t`` on a ``size`` (width, height) grid."""
    w, h = size
    peds, _ = _walkers(cfg)
    boxes = []
    for p in peds:
        cx = _wrap(p.x + p.vx * t)
        bw = p.height * 0.35
        boxes.append((int((cx - bw / 2) * w), int((p.y - p.height) * h), int((cx + bw / 2) * w), int(p.y * h)))
    return boxes


def _draw_person(img: np.ndarray, cx: float, foot: float, height: float, value: float, phase: float) -> None:
    h, w = img.shape[:2]
    sx, sy = w, h
    head_r = max(1, int(0.07 * height * sy))
    top = foot - height
    cv2.circle(img, (int(cx * sx), int((top + 0.07 * height) * sy)), head_r, value, -1, cv2.LINE_AA)
    body = np.array([[cx - 0.07 * height, top + 0.15 * height], [cx + 0.07 * height, top + 0.15 * height],
                     [cx + 0.06 * height, top + 0.55 * height], [cx - 0.06 * height, top + 0.55 * height]])
    cv2.fillConvexPoly(img, (body * [sx, sy]).astype(np.int32), value, cv2.LINE_AA)
    swing = 0.08 * height * np.sin(phase)
    for s in (swing, -swing):
        p0 = (int(cx * sx), int((top + 0.55 * height) * sy))
        p1 = (int((cx + s) * sx), int(foot * sy))
        cv2.line(img, p0, p1, value, max(1, int(0.05 * height * sx * 0.6)), cv2.LINE_AA)


def _draw_car(img: np.ndarray, cx: float, base: float, height: float, body: float, hot: float) -> None:
    h, w = img.shape[:2]
    length = height * 2.6
    x0, x1 = int((cx - length / 2) * w), int((cx + length / 2) * w)
    y0, y1 = int((base - height) * h), int(base * h)
    cv2.rectangle(img, (x0, y0 + (y1 - y0) // 3), (x1, y1), body, -1, cv2.LINE_AA)
    cv2.rectangle(img, (x0 + (x1 - x0) // 5, y0), (x1 - (x1 - x0) // 4, y0 + (y1 - y0) // 3), body, -1, cv2.LINE_AA)
    if hot is not None:
        r = max(1, (y1 - y0) // 5)
        for wx in (x0 + (x1 - x0) // 5, x1 - (x1 - x0) // 5):
            cv2.circle(img, (wx, y1), r, hot, -1, cv2.LINE_AA)


class NightScene:
    """Iterable of ``(thermal (h, w) uint16, rgb (H, W, 3) uint8 RGB, t seconds)``.

    Args:
        cfg: scene settings.
    """

    def __init__(self, cfg: SceneConfig = SceneConfig()) -> None:
        self.cfg = cfg
        self._peds, self._cars = _walkers(cfg)
        self._rng = np.random.default_rng(cfg.seed + 1)
        self._rgb_bg = self._rgb_background()
        self._th_bg = self._thermal_background()

    def __len__(self) -> int:
        return self.cfg.frames

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
        for i in range(self.cfg.frames):
            t = i / self.cfg.fps
            yield self.thermal(t), self.rgb(t), t

    def _rgb_background(self) -> np.ndarray:
        w, h = self.cfg.rgb_size
        img = np.zeros((h, w, 3), np.float32)
        img[: int(0.55 * h)] = (6, 7, 12)                  # night sky
        img[int(0.55 * h):] = (12, 12, 13)                 # street
        rng = np.random.default_rng(self.cfg.seed + 7)
        for _ in range(5):                                 # building silhouettes with a few lit windows
            x0 = int(rng.uniform(0, 0.9) * w)
            bw, bh = int(rng.uniform(0.08, 0.2) * w), int(rng.uniform(0.15, 0.4) * h)
            cv2.rectangle(img, (x0, int(0.55 * h) - bh), (x0 + bw, int(0.55 * h)), (10, 10, 11), -1)
            for _ in range(3):
                wx = x0 + int(rng.uniform(0.1, 0.8) * bw)
                wy = int(0.55 * h) - int(rng.uniform(0.2, 0.9) * bh)
                cv2.rectangle(img, (wx, wy), (wx + w // 90, wy + h // 60), (60, 70, 90), -1)
        cv2.line(img, (0, int(0.8 * h)), (w, int(0.8 * h)), (22, 22, 22), 2)
        return img

    def _thermal_background(self) -> np.ndarray:
        w, h = self.cfg.thermal_size
        ys = np.linspace(0, 1, h, dtype=np.float32)[:, None]
        bg = np.empty((h, w), np.float32)
        bg[:] = 7400 + 500 * ys                            # ground warmer than the sky
        bg[: int(0.55 * h)] = 7000
        return bg

    def thermal(self, t: float) -> np.ndarray:
        """(h, w) uint16 radiometric-like counts at time ``t``."""
        img = self._th_bg.copy()
        for i, c in enumerate(self._cars):
            _draw_car(img, _wrap(c.x + c.vx * t), c.y, c.height, 8300.0, 9800.0)
        for i, p in enumerate(self._peds):
            _draw_person(img, _wrap(p.x + p.vx * t), p.y, p.height, 9300.0, 9.0 * t + i)
        img = cv2.GaussianBlur(img, (0, 0), 0.8)
        img += self._rng.normal(0, 25, img.shape).astype(np.float32)     # sensor noise
        return np.clip(img, 0, 65535).astype(np.uint16)

    def rgb(self, t: float) -> np.ndarray:
        """(H, W, 3) uint8 RGB at time ``t``: dark, foggy, with headlight glare."""
        w, h = self.cfg.rgb_size
        img = self._rgb_bg.copy()
        for c in self._cars:
            _draw_car(img, _wrap(c.x + c.vx * t), c.y, c.height, (14, 14, 18), None)
        for i, p in enumerate(self._peds):
            # Dark clothing: barely above the street level.
            _draw_person(img, _wrap(p.x + p.vx * t), p.y, p.height, (17, 16, 16), 9.0 * t + i)
        fog = self.cfg.fog
        img = img * (1 - 0.35 * fog) + 40.0 * fog                      # veil: lower contrast, lifted blacks
        glare = np.zeros((h, w), np.float32)
        for c in self._cars:
            cx = _wrap(c.x + c.vx * t)
            lx = cx + np.sign(c.vx) * c.height * 1.3           # headlights at the front of the car
            for dy in (0.0,):
                centre = (int(lx * w), int((c.y - c.height * 0.35 + dy) * h))
                cv2.circle(glare, centre, max(1, w // 16), 1.0, -1, cv2.LINE_AA)
        glare = cv2.GaussianBlur(glare, (0, 0), w / 18)
        glare = glare / max(float(glare.max()), 1e-6)
        img += (255.0 * glare ** 0.7)[..., None] * np.float32([1.0, 0.97, 0.85])
        img = cv2.GaussianBlur(img, (0, 0), 0.6 + 1.5 * fog)
        img += self._rng.normal(0, 2.0, img.shape).astype(np.float32)   # low-light noise
        return np.clip(img, 0, 255).astype(np.uint8)
