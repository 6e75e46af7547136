"""``sensor_msgs/Image`` <-> arrays for the node: stamps, zero-copy decode, encode with the input's header."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

from fusion_ros.pipeline import image_codec as ic

__all__ = ["stamp_seconds", "stamp_nanoseconds", "decode_rgb", "decode_thermal", "image_with_header"]


def stamp_seconds(stamp) -> float:
    """``builtin_interfaces/Time`` -> seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def stamp_nanoseconds(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def decode_rgb(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB view/array of an RGB camera image. Raises EncodingError (with a ``kind``)."""
    return ic.to_rgb(ic.decode(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data), msg.encoding)


def decode_thermal(msg: Image) -> np.ndarray:
    """(h, w) uint8/uint16 array of a thermal camera image. Raises EncodingError (with a ``kind``)."""
    view = ic.decode(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)
    return ic.to_thermal(view, msg.encoding)


def image_with_header(header_from: Image, rgb: np.ndarray, encoding: str) -> Image:
    """A new Image of ``rgb`` (H, W, 3 uint8 RGB) in ``encoding``, with ``header_from``'s header."""
    enc = ic.encode(ic.from_rgb(np.ascontiguousarray(rgb), encoding), encoding)
    out = Image()
    out.header = header_from.header
    out.height, out.width, out.encoding = enc.height, enc.width, enc.encoding
    out.is_bigendian, out.step = int(enc.is_bigendian), enc.step
    out.data = enc.data
    return out
