"""Image decoding: formats, every Pillow mode, limits, errors, no EXIF transposition."""

from __future__ import annotations

import io
import struct
import threading
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from ml_target.errors import BadRequest, PayloadTooLarge
from ml_target.vision import decode as decode_module
from ml_target.vision.decode import ImageDecoder, decode_image, decode_reduced

LIMIT = 10_000_000


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def gradient(width: int = 64, height: int = 48) -> np.ndarray:
    """Smooth RGB content (so JPEG is close to exact)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // (width - 1), y * 255 // (height - 1), np.full_like(x, 90)], axis=2).astype(np.uint8)


@pytest.mark.parametrize(("fmt", "params"), [("PNG", {}), ("WEBP", {"lossless": True}), ("TIFF", {}), ("BMP", {})])
def test_lossless_formats_decode_exactly(fmt: str, params: dict) -> None:
    pixels = gradient()
    decoded = decode_image(encode(Image.fromarray(pixels), fmt, **params), max_pixels=LIMIT)
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, pixels)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_lossy_formats_decode_close_to_source(fmt: str) -> None:
    pixels = gradient()
    decoded = decode_image(encode(Image.fromarray(pixels), fmt, quality=95), max_pixels=LIMIT)
    assert decoded.shape == (48, 64, 3)
    assert np.abs(decoded.astype(int) - pixels).mean() < 3.0


def test_gif_first_frame_is_used() -> None:
    red = Image.new("RGB", (8, 6), (255, 0, 0))
    blue = Image.new("RGB", (8, 6), (0, 0, 255))
    data = encode(red, "GIF", save_all=True, append_images=[blue])
    decoded = decode_image(data, max_pixels=LIMIT)
    assert decoded.shape == (6, 8, 3)
    assert (decoded == [255, 0, 0]).all()


def test_exif_orientation_is_ignored() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": Immich must still see the stored 40x20
    data = encode(Image.fromarray(gradient(40, 20)), "JPEG", exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).getexif()[0x0112] == 6
    assert decode_image(data, max_pixels=LIMIT).shape == (20, 40, 3)


def test_rgba_drops_alpha_without_compositing() -> None:
    rgba = np.array([[[10, 20, 30, 0], [200, 100, 50, 128], [1, 2, 3, 255]]], dtype=np.uint8)
    decoded = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), max_pixels=LIMIT)
    np.testing.assert_array_equal(decoded, rgba[:, :, :3])


def test_la_and_l_become_grey() -> None:
    la = Image.fromarray(np.array([[[0, 0], [77, 10], [255, 255]]], dtype=np.uint8), "LA")
    np.testing.assert_array_equal(decode_image(encode(la, "PNG"), max_pixels=LIMIT)[0, :, 0], [0, 77, 255])
    np.testing.assert_array_equal(decode_image(encode(la, "PNG"), max_pixels=LIMIT)[0, 1], [77, 77, 77])
    grey = Image.fromarray(np.array([[5, 250]], dtype=np.uint8), "L")
    np.testing.assert_array_equal(decode_image(encode(grey, "PNG"), max_pixels=LIMIT)[0], [[5, 5, 5], [250, 250, 250]])


def test_palette_with_transparency_keeps_palette_colours() -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 200, 50] + [0] * (253 * 3))
    image.putpixel((0, 0), 1)  # opaque red
    image.putpixel((1, 0), 2)  # the transparent index: Pillow's convert keeps its colour
    data = encode(image, "PNG", transparency=2)
    assert Image.open(io.BytesIO(data)).info["transparency"] == 2
    np.testing.assert_array_equal(decode_image(data, max_pixels=LIMIT)[0], [[255, 0, 0], [0, 200, 50]])


def test_cmyk_uses_pillows_conversion() -> None:
    cmyk = Image.new("CMYK", (4, 1))
    for x, value in enumerate([(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255), (0, 0, 0, 128)]):
        cmyk.putpixel((x, 0), value)
    decoded = decode_image(encode(cmyk, "JPEG", quality=100), max_pixels=LIMIT)
    expected = np.array([[255, 255, 255], [0, 255, 255], [0, 0, 0], [127, 127, 127]])
    assert np.abs(decoded[0].astype(int) - expected).max() <= 3
    tiff = decode_image(encode(cmyk, "TIFF"), max_pixels=LIMIT)
    np.testing.assert_array_equal(tiff[0], expected)


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_sixteen_bit_grey_is_scaled_not_clipped(mode: str) -> None:
    values = np.array([[0, 1000, 32768, 65535, 257]], dtype=np.uint16)
    raw = values.astype(">u2" if mode == "I;16B" else "<u2").tobytes()
    image = Image.frombytes(mode, (5, 1), raw)
    data = encode(image, "TIFF" if mode == "I;16B" else "PNG")
    assert Image.open(io.BytesIO(data)).mode == mode
    decoded = decode_image(data, max_pixels=LIMIT)
    np.testing.assert_array_equal(decoded[0, :, 0], [0, 4, 128, 255, 1])
    np.testing.assert_array_equal(decoded[0, :, 0], decoded[0, :, 2])


def test_one_bit_becomes_black_and_white() -> None:
    image = Image.new("1", (3, 1))
    image.putpixel((1, 0), 1)
    np.testing.assert_array_equal(decode_image(encode(image, "BMP"), max_pixels=LIMIT)[0, :, 1], [0, 255, 0])


def test_float_and_int32_are_clipped_like_pillow() -> None:
    floats = Image.fromarray(np.array([[-5.0, 100.0, 300.0]], dtype=np.float32), "F")
    np.testing.assert_array_equal(decode_image(encode(floats, "TIFF"), max_pixels=LIMIT)[0, :, 0], [0, 100, 255])
    ints = Image.fromarray(np.array([[0, 100, 70000]], dtype=np.int32), "I")
    np.testing.assert_array_equal(decode_image(encode(ints, "TIFF"), max_pixels=LIMIT)[0, :, 0], [0, 100, 255])


def test_decoded_image_is_read_only_and_contiguous() -> None:
    decoded = decode_image(encode(Image.fromarray(gradient()), "PNG"), max_pixels=LIMIT)
    assert not decoded.flags.writeable
    assert decoded.flags.c_contiguous
    with pytest.raises(ValueError):
        decoded[0, 0, 0] = 1


def test_empty_file_says_zero() -> None:
    with pytest.raises(BadRequest, match="zero"):
        decode_image(b"", max_pixels=LIMIT)


@pytest.mark.parametrize("data", [b"not an image at all", b"\x00" * 100, encode(Image.new("RGB", (4, 4)), "PPM")])
def test_unknown_formats_are_refused_with_the_accepted_list(data: bytes) -> None:
    with pytest.raises(BadRequest, match="Cannot identify the image format; send JPEG, WebP"):
        decode_image(data, max_pixels=LIMIT)


def test_truncated_jpeg_gives_the_decoders_reason() -> None:
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    with pytest.raises(BadRequest, match="truncated"):
        decode_image(data[: len(data) // 2], max_pixels=LIMIT)


def test_corrupt_png_is_a_bad_request() -> None:
    data = bytearray(encode(Image.fromarray(gradient()), "PNG"))
    data[60:90] = b"\xff" * 30
    with pytest.raises(BadRequest, match="PNG"):
        decode_image(bytes(data), max_pixels=LIMIT)


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares `width` x `height`, with (almost) no pixel data."""
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def test_pixel_budget_is_checked_from_the_header() -> None:
    with pytest.raises(PayloadTooLarge, match="5000x4000 = 20000000 pixels"):
        decode_image(png_header(5_000, 4_000), max_pixels=LIMIT)


def test_pillows_decompression_bomb_error_is_a_413() -> None:
    # Above our budget too, but the budget is set huge so Pillow's own guard (2 x 89.5 Mpx) fires.
    with pytest.raises(PayloadTooLarge, match="decompression bomb"):
        decode_image(png_header(20_000, 10_000), max_pixels=10**12)


@pytest.mark.parametrize("size", [(0, 10), (10, 0)])
def test_zero_sized_image_is_a_bad_request(size: tuple[int, int]) -> None:
    # Pillow itself refuses a zero dimension in the header; Immich's explicit check is our backstop.
    with pytest.raises(BadRequest, match=r"zero width or height|Cannot identify the image format"):
        decode_image(png_header(*size), max_pixels=LIMIT)


def photo_like(width: int = 333, height: int = 217) -> Image.Image:
    """Odd-sized, half smooth and half noise: partial MCUs, chroma edges and IDCT clipping all occur."""
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(np.where(x[..., None] < width // 2, gradient(width, height), noise).astype(np.uint8))


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(photo_like(), "JPEG", exif=exif.tobytes())


JPEG_VARIANTS = {
    **{
        f"subsampling-{sub}-q{q}": encode(photo_like(), "JPEG", subsampling=sub, quality=q)
        for sub in (0, 1, 2)
        for q in (50, 80, 95)
    },
    "progressive": encode(photo_like(), "JPEG", progressive=True, quality=80),
    "optimized-huffman": encode(photo_like(), "JPEG", optimize=True, quality=80),
    "restart-markers": encode(photo_like(), "JPEG", restart_marker_blocks=4, quality=80),
    "icc-profile": encode(photo_like(), "JPEG", icc_profile=b"\0" * 200, quality=80),
    "exif-rotated": _exif_rotated(),
    "opencv-encoded": cv2.imencode(".jpg", np.asarray(photo_like()))[1].tobytes(),
    "opencv-progressive": cv2.imencode(".jpg", np.asarray(photo_like()), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
}


@pytest.mark.parametrize("data", JPEG_VARIANTS.values(), ids=JPEG_VARIANTS.keys())
def test_colour_jpegs_take_libjpeg_turbo_and_match_pillow_exactly(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    fast_decodes: list[bool] = []
    original = decode_module._decode_with_libjpeg

    def spy(data: bytes, scale: int, size: tuple[int, int]) -> np.ndarray | None:
        pixels = original(data, scale, size)
        fast_decodes.append(pixels is not None)
        return pixels

    monkeypatch.setattr(decode_module, "_decode_with_libjpeg", spy)
    immich_sees = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    decoded = decode_image(data, max_pixels=LIMIT)
    assert fast_decodes == [True]
    np.testing.assert_array_equal(decoded, immich_sees)
    assert not decoded.flags.writeable and decoded.flags.c_contiguous


@pytest.mark.parametrize(
    "draft_size, scale", [((400, 300), 1), ((300, 200), 1), ((160, 100), 2), ((80, 54), 4), ((40, 27), 8)]
)
@pytest.mark.parametrize("data", JPEG_VARIANTS.values(), ids=JPEG_VARIANTS.keys())
def test_reduced_colour_jpegs_take_libjpeg_turbo_and_match_pillows_draft(
    data: bytes, draft_size: tuple[int, int], scale: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """photo_like() is 333x217, so each requested size picks a different DCT scale."""
    scales: list[int] = []
    original = decode_module._decode_with_libjpeg

    def spy(data: bytes, scale: int, size: tuple[int, int]) -> np.ndarray | None:
        pixels = original(data, scale, size)
        scales.append(scale if pixels is not None else 0)
        return pixels

    monkeypatch.setattr(decode_module, "_decode_with_libjpeg", spy)
    pillow = Image.open(io.BytesIO(data))
    pillow.draft("RGB", draft_size)
    pillow_sees = np.asarray(pillow.convert("RGB"))
    reduced = decode_reduced(data, max_pixels=LIMIT, min_size=draft_size)
    assert scales == [scale]
    assert pillow_sees.shape == (-(-217 // scale), -(-333 // scale), 3)
    np.testing.assert_array_equal(reduced.pixels, pillow_sees)
    assert reduced.full_size == (217, 333)


def test_corrupt_jpeg_body_with_an_end_marker_decodes_as_pillow_does() -> None:
    data = bytearray(JPEG_VARIANTS["subsampling-2-q80"])
    middle = len(data) // 2
    data[middle : middle + 40] = np.random.default_rng(2).integers(0, 256, 40, dtype=np.uint8).tobytes()
    immich_sees = np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGB"))
    np.testing.assert_array_equal(decode_image(bytes(data), max_pixels=LIMIT), immich_sees)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_greyscale_and_cmyk_jpegs_are_left_to_pillow(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode_module, "_decode_with_libjpeg", lambda *_: pytest.fail("took the colour path"))
    data = encode(photo_like().convert(mode), "JPEG", quality=90)
    immich_sees = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(decode_image(data, max_pixels=LIMIT), immich_sees)


def test_jpeg_draft_decodes_at_reduced_scale_only_when_asked() -> None:
    data = encode(Image.fromarray(gradient(800, 600)), "JPEG")
    assert decode_image(data, max_pixels=LIMIT).shape == (600, 800, 3)
    small = decode_image(data, max_pixels=LIMIT, draft_size=(200, 150))
    assert small.shape == (150, 200, 3)
    assert abs(int(small[75, 100, 0]) - int(gradient(800, 600)[300, 400, 0])) < 8


async def test_image_decoder_runs_off_the_event_loop_thread() -> None:
    decoder = ImageDecoder(max_pixels=LIMIT, threads=1)
    seen: list[str] = []
    original = Image.Image.load

    def spy(self: Image.Image):
        seen.append(threading.current_thread().name)
        return original(self)

    data = encode(Image.fromarray(gradient()), "PNG")
    try:
        Image.Image.load = spy  # type: ignore[method-assign]
        decoded = await decoder.decode(data)
    finally:
        Image.Image.load = original  # type: ignore[method-assign]
        decoder.close()
    np.testing.assert_array_equal(decoded, gradient())
    assert seen and all(name.startswith("decode") for name in seen)
