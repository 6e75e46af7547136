"""Zero-copy decode / encode of every supported encoding."""

from __future__ import annotations

from array import array

import numpy as np
import pytest

from fusion_ros.errors import EncodingError
from fusion_ros.pipeline import image_codec as ic

H, W = 6, 8


def _sample(encoding: str, rng: np.random.Generator) -> np.ndarray:
    fmt = ic.ENCODINGS[encoding]
    dtype = np.uint16 if fmt.dtype == "u2" else np.uint8
    shape = (H, W) if fmt.channels == 1 else (H, W, fmt.channels)
    return rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("encoding", list(ic.ENCODINGS))
def test_round_trip_raw(encoding):
    img = _sample(encoding, np.random.default_rng(0))
    enc = ic.encode(img, encoding)
    assert enc.step == W * ic.pixel_bytes(encoding)
    out = ic.decode(encoding, enc.height, enc.width, enc.step, enc.is_bigendian, enc.data)
    assert out.shape == img.shape and out.dtype.itemsize == img.dtype.itemsize
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("encoding", list(ic.ENCODINGS))
def test_decode_is_a_view_honouring_step(encoding):
    """Rows padded by 5 bytes (2 elements for 16-bit): the view skips the padding and shares memory."""
    img = _sample(encoding, np.random.default_rng(1))
    row = W * ic.pixel_bytes(encoding)
    pad = 6 if img.dtype.itemsize == 2 else 5
    buf = np.zeros((H, row + pad), np.uint8)
    buf[:, :row] = np.ascontiguousarray(img).view(np.uint8).reshape(H, row)
    data = array("B", buf.tobytes())
    out = ic.decode(encoding, H, W, row + pad, False, data)
    np.testing.assert_array_equal(out, img)
    assert np.shares_memory(out, np.frombuffer(data, np.uint8))


@pytest.mark.parametrize("encoding", ic.RGB_ENCODINGS)
def test_rgb_converters_round_trip(encoding):
    rng = np.random.default_rng(2)
    if encoding in ("mono8", "8UC1"):
        g = rng.integers(0, 256, (H, W), dtype=np.uint8)
        rgb = np.stack([g, g, g], -1)
    else:
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2"):
        # Chroma is shared by two pixels: round trip of a smooth image within YUV rounding.
        rgb = np.repeat(rgb[:, ::2], 2, axis=1)
    packed = ic.from_rgb(rgb, encoding)
    enc = ic.encode(packed, encoding)
    back = ic.to_rgb(ic.decode(encoding, H, W, enc.step, enc.is_bigendian, enc.data), encoding)
    assert back.shape == (H, W, 3) and back.dtype == np.uint8
    tol = 12 if encoding in ("yuv422", "uyvy", "yuv422_yuy2") else 0
    assert np.abs(back.astype(int) - rgb.astype(int)).max() <= tol


def test_bgr_to_rgb_is_a_view():
    bgr = np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8)
    enc = ic.encode(bgr, "bgr8")
    view = ic.decode("bgr8", H, W, enc.step, False, enc.data)
    rgb = ic.to_rgb(view, "bgr8")
    assert np.shares_memory(rgb, view)
    np.testing.assert_array_equal(rgb, bgr[..., ::-1])


def test_big_endian_mono16():
    img = np.arange(H * W, dtype=np.uint16).reshape(H, W) * 300
    data = img.astype(">u2").tobytes()
    out = ic.to_thermal(ic.decode("mono16", H, W, W * 2, True, data), "mono16")
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("encoding", ic.THERMAL_ENCODINGS)
def test_to_thermal(encoding):
    img = _sample(encoding, np.random.default_rng(4))
    out = ic.to_thermal(img, encoding)
    assert out.ndim == 2
    np.testing.assert_array_equal(out, img)


def test_errors_name_the_problem():
    data = bytes(H * W * 3)
    with pytest.raises(EncodingError, match="unknown image encoding 'bayer_rggb8'"):
        ic.decode("bayer_rggb8", H, W, W * 3, False, data)
    with pytest.raises(EncodingError, match="empty data"):
        ic.decode("rgb8", H, W, W * 3, False, b"")
    with pytest.raises(EncodingError, match="truncated"):
        ic.decode("rgb8", H, W, W * 3, False, data[:-1])
    with pytest.raises(EncodingError, match="step 10 < width"):
        ic.decode("rgb8", H, W, 10, False, data)
    with pytest.raises(EncodingError, match="thermal/image_raw encoding 'bgr8' unsupported"):
        ic.to_thermal(np.zeros((H, W, 3), np.uint8), "bgr8")
    with pytest.raises(EncodingError, match="cannot encode"):
        ic.encode(np.zeros((H, W), np.uint8), "rgb8")
