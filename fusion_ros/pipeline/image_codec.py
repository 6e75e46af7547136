"""Zero-copy decode / encode of ``sensor_msgs/Image``-style buffers (ROS-free).

A message is described by ``(encoding, height, width, step, is_bigendian, data)``; :func:`decode` returns a
numpy *view* of ``data`` that honours ``step`` (row padding) the way ``cv_bridge`` does, without copying.
Converters then turn a view into the arrays the pipeline works with: RGB ``uint8`` for the visible stream
and a single-channel ``uint8``/``uint16`` array for the thermal stream.

Example:
    >>> import numpy as np
    >>> img = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    >>> enc = encode(img, "rgb8")
    >>> decode("rgb8", 2, 2, enc.step, False, enc.data).shape
    (2, 2, 3)
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from fusion_ros.errors import EncodingError

__all__ = [
    "ENCODINGS", "RGB_ENCODINGS", "THERMAL_ENCODINGS", "Encoded", "decode", "encode", "to_rgb", "from_rgb",
    "to_thermal", "pixel_bytes", "rgb_from_message", "thermal_from_message", "stamp_seconds",
]


@dataclass(frozen=True)
class _Format:
    dtype: str       # numpy element type (native order; big-endian handled on decode)
    channels: int    # elements per pixel in the decoded view (yuv422: 2 bytes per pixel)


ENCODINGS: dict[str, _Format] = {
    "rgb8": _Format("u1", 3),
    "bgr8": _Format("u1", 3),
    "rgba8": _Format("u1", 4),
    "bgra8": _Format("u1", 4),
    "mono8": _Format("u1", 1),
    "8UC1": _Format("u1", 1),
    "mono16": _Format("u2", 1),
    "16UC1": _Format("u2", 1),
    "yuv422": _Format("u1", 2),        # UYVY: U0 Y0 V0 Y1, 2 bytes per pixel
    "uyvy": _Format("u1", 2),          # alias used by some drivers
    "yuv422_yuy2": _Format("u1", 2),   # YUYV: Y0 U0 Y1 V0
}
# Encodings accepted on the visible and thermal inputs.
RGB_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "yuv422", "uyvy", "yuv422_yuy2")
THERMAL_ENCODINGS = ("mono16", "16UC1", "mono8", "8UC1")

_NATIVE_BIG = sys.byteorder == "big"


def pixel_bytes(encoding: str) -> int:
    """Bytes per pixel of ``encoding``; raises :class:`EncodingError` for an unknown one."""
    fmt = _format(encoding)
    return np.dtype(fmt.dtype).itemsize * fmt.channels


def _format(encoding: str) -> _Format:
    fmt = ENCODINGS.get(encoding)
    if fmt is None:
        raise EncodingError(f"unknown image encoding '{encoding}'; supported: {', '.join(ENCODINGS)}",
                            "unknown_encoding")
    return fmt


def decode(encoding: str, height: int, width: int, step: int, is_bigendian: bool | int, data: Any) -> np.ndarray:
    """View an image buffer as a numpy array without copying.

    Args:
        encoding: ROS image encoding (see :data:`ENCODINGS`).
        height, width: image size in pixels (> 0).
        step: bytes per row, ``>= width * bytes_per_pixel`` (extra bytes are row padding, skipped).
        is_bigendian: byte order of 16-bit data.
        data: any buffer (``bytes``, ``array.array('B')`` from rclpy, ``memoryview``, numpy ``uint8``).

    Returns:
        (H, W) for 1-channel encodings, (H, W, C) otherwise (yuv422: (H, W, 2) raw bytes); dtype uint8 or
        uint16 (a big-endian uint16 view when ``is_bigendian`` differs from the host). Shares memory with
        ``data``; read-only when ``data`` is.

    Raises:
        EncodingError: unknown encoding, empty data, non-positive size, step too small, or data shorter than
            ``height * step``.
    """
    fmt = _format(encoding)
    if height <= 0 or width <= 0:
        raise EncodingError(f"image '{encoding}' has size {width}x{height}; width and height must be > 0",
                            "zero_size")
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        raise EncodingError(f"image '{encoding}' {width}x{height} has empty data", "empty_data")
    item = np.dtype(fmt.dtype).itemsize
    row = width * item * fmt.channels
    if step < row:
        raise EncodingError(f"image '{encoding}' {width}x{height}: step {step} < width*bytes_per_pixel = {row}; "
                            "fix the publisher's step", "small_step")
    if item > 1 and step % item:
        raise EncodingError(f"image '{encoding}': step {step} is not a multiple of the {item}-byte element size",
                            "step_alignment")
    if buf.size < height * step:
        raise EncodingError(f"image '{encoding}' {width}x{height} step {step}: data has {buf.size} bytes, "
                            f"expected height*step = {height * step} (truncated message)", "short_data")
    rows = buf[:height * step].reshape(height, step)[:, :row]
    dt = np.dtype(fmt.dtype)
    if item > 1:
        dt = dt.newbyteorder(">" if is_bigendian else "<")
    view = rows.view(dt)
    if fmt.channels == 1:
        return view
    return view.reshape(height, width, fmt.channels)


@dataclass(frozen=True)
class Encoded:
    """An encoded image ready for a ``sensor_msgs/Image``: ``data`` is an ``array('B')`` (what rclpy stores)."""

    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: bool
    data: array


def encode(img: np.ndarray, encoding: str) -> Encoded:
    """Pack an array already in ``encoding``'s layout into a contiguous message buffer (one copy).

    Args:
        img: (H, W) or (H, W, C) array laid out as ``encoding`` expects (as returned by :func:`decode`
            or :func:`from_rgb`).
        encoding: target ROS encoding.

    Returns:
        :class:`Encoded` with ``step = W * bytes_per_pixel`` and host byte order.

    Raises:
        EncodingError: unknown encoding or an array whose channels/dtype do not fit it.
    """
    fmt = _format(encoding)
    h, w = img.shape[:2]
    channels = 1 if img.ndim == 2 else img.shape[2]
    if channels != fmt.channels or img.dtype.itemsize != np.dtype(fmt.dtype).itemsize:
        raise EncodingError(f"cannot encode a {img.dtype} array of shape {img.shape} as '{encoding}'; expected "
                            f"{fmt.channels} channel(s) of {np.dtype(fmt.dtype).name}", "layout")
    if img.dtype.itemsize > 1 and not img.dtype.isnative:
        img = img.astype(img.dtype.newbyteorder("="))
    data = array("B")
    data.frombytes(np.ascontiguousarray(img).reshape(-1).view(np.uint8).data)
    return Encoded(encoding, h, w, w * img.dtype.itemsize * channels, _NATIVE_BIG, data)


def to_rgb(img: np.ndarray, encoding: str) -> np.ndarray:
    """Convert a decoded visible image to RGB.

    Args:
        img: decoded view from :func:`decode` in ``encoding``.
        encoding: one of :data:`RGB_ENCODINGS`.

    Returns:
        (H, W, 3) uint8 RGB. For rgb8/rgba8/bgr8/bgra8 this is a view (possibly non-contiguous, e.g. a
        reversed channel axis), otherwise a new array.

    Raises:
        EncodingError: encoding not usable as a visible image.
    """
    if encoding == "rgb8":
        return img
    if encoding == "bgr8":
        return img[..., ::-1]
    if encoding == "rgba8":
        return img[..., :3]
    if encoding == "bgra8":
        return img[..., 2::-1]
    if encoding in ("mono8", "8UC1"):
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_GRAY2RGB)
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2") and img.shape[1] % 2:
        raise EncodingError(f"'{encoding}' image of odd width {img.shape[1]}: 4:2:2 pixels come in pairs; "
                            "fix the driver's width", "odd_width")
    if encoding in ("yuv422", "uyvy"):
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_YUV2RGB_UYVY)
    if encoding == "yuv422_yuy2":
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_YUV2RGB_YUY2)
    raise EncodingError(f"rgb/image_raw encoding '{encoding}' unsupported; expected one of {', '.join(RGB_ENCODINGS)}",
                        "wrong_encoding")


def from_rgb(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """Convert an RGB image to the layout of ``encoding`` (the inverse of :func:`to_rgb`).

    Args:
        rgb: (H, W, 3) uint8 RGB.
        encoding: one of :data:`RGB_ENCODINGS` (yuv422 needs an even width).

    Returns:
        (H, W[, C]) uint8 array ready for :func:`encode`.

    Raises:
        EncodingError: unsupported encoding or an odd width for a yuv422 encoding.
    """
    if encoding == "rgb8":
        return rgb
    if encoding == "bgr8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if encoding == "rgba8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    if encoding == "bgra8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    if encoding in ("mono8", "8UC1"):
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2"):
        if rgb.shape[1] % 2:
            raise EncodingError(f"'{encoding}' needs an even width, got {rgb.shape[1]}; set output_encoding to "
                                "rgb8 or bgr8 for this camera", "odd_width")
        code = cv2.COLOR_RGB2YUV_YUY2 if encoding == "yuv422_yuy2" else cv2.COLOR_RGB2YUV_UYVY
        return cv2.cvtColor(rgb, code)
    raise EncodingError(f"output encoding '{encoding}' unsupported; expected one of {', '.join(RGB_ENCODINGS)}",
                        "wrong_encoding")


def to_thermal(img: np.ndarray, encoding: str) -> np.ndarray:
    """Convert a decoded thermal image to a single-channel host-order array.

    Args:
        img: decoded view from :func:`decode`.
        encoding: one of :data:`THERMAL_ENCODINGS`.

    Returns:
        (H, W) uint8 (8-bit encodings) or uint16 (16-bit; a view unless the byte order had to be swapped).

    Raises:
        EncodingError: encoding not usable as a thermal image.
    """
    if encoding not in THERMAL_ENCODINGS:
        raise EncodingError(f"thermal/image_raw encoding '{encoding}' unsupported; expected "
                            f"{', '.join(THERMAL_ENCODINGS[:-1])} or {THERMAL_ENCODINGS[-1]}", "wrong_encoding")
    if img.dtype.itemsize > 1 and not img.dtype.isnative:
        return img.astype(np.uint16)
    return img


def rgb_from_message(msg: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image message (``sensor_msgs/Image`` from rclpy or rosbags; any object with its
    fields). Raises :class:`EncodingError` (with a ``kind``)."""
    return to_rgb(decode(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data), msg.encoding)


def thermal_from_message(msg: Any) -> np.ndarray:
    """(h, w) uint8/uint16 of a thermal image message. Raises :class:`EncodingError` (with a ``kind``)."""
    return to_thermal(decode(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data), msg.encoding)


def stamp_seconds(stamp: Any) -> float:
    """A ``builtin_interfaces/Time`` (``sec``, ``nanosec``) in seconds."""
    return stamp.sec + stamp.nanosec * 1e-9
