"""``sensor_msgs/Image`` <-> arrays for the node: stamps, zero-copy decode, encode with the input's header."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

from fusion_ros.pipeline import image_codec as ic

__all__ = ["stamp_seconds", "stamp_nanoseconds", "decode_rgb", "decode_thermal", "image_with_header"]


stamp_seconds = ic.stamp_seconds
decode_rgb = ic.rgb_from_message
decode_thermal = ic.thermal_from_message


def stamp_nanoseconds(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def image_with_header(header_from: Image, rgb: np.ndarray, encoding: str) -> Image:
    """A new Image of ``rgb`` (H, W, 3 uint8 RGB) in ``encoding``, with ``header_from``'s header."""
    enc = ic.encode(ic.from_rgb(np.ascontiguousarray(rgb), encoding), encoding)
    out = Image()
    out.header = header_from.header
    out.height, out.width, out.encoding = enc.height, enc.width, enc.encoding
    out.is_bigendian, out.step = int(enc.is_bigendian), enc.step
    out.data = enc.data
    return out
