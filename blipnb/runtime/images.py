"""Open any image (paths, bytes, PIL, datasets rows) as the upright 8-bit RGB image a captioner sees.

The one place images are opened: the loaders' checks, training collation, the pixel cache, evaluation, `blipnb
caption`, the server and an exported model's hosts all come through here, so the pixel limit, the
decompression-bomb error and the 16-bit scaling apply everywhere alike.
"""
from __future__ import annotations

import io
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class BadImageError(ValueError):
    """An image that cannot be decoded, or is refused; the message names the file or image id."""


class ImageTooLarge(BadImageError):
    """An image over the pixel limit, refused from its header before decoding."""

# Modes holding more than 8 bits per pixel: converting them to RGB clips at 255 (a full-range 16-bit image comes
# out white), so they are scaled by their own range first.
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def to_rgb(image, name: str | None = None, max_pixels: int | None = None) -> Image.Image:
    """Return `image` as RGB: palette/alpha images go onto white, CMYK/greyscale convert, EXIF rotation applies,
    16-bit and float images are scaled by their range. Over `max_pixels` (from the header) is a BadImageError."""
    label = name or _describe(image)
    try:
        with bombs_are_errors(max_pixels):
            img = open_image(image)
            check_pixels(img, label, max_pixels)
            img.load()
            img = ImageOps.exif_transpose(img)
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLarge(f"cannot read image {label}: {describe_error(e)}") from None
    except Exception as e:  # PIL raises many types for truncated or foreign files
        raise BadImageError(f"cannot read image {label}: {describe_error(e)}") from None
    img = to_8bit(img)
    if img.mode in ("RGBA", "LA", "P", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def open_image(image) -> Image.Image:
    """Open a path, bytes, PIL image or undecoded datasets value ({bytes, path}) lazily, without converting."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, (str, os.PathLike)):
        return Image.open(Path(image))
    if isinstance(image, (bytes, bytearray)):
        return Image.open(io.BytesIO(image))
    if isinstance(image, dict):  # a datasets Image feature row with decode=False
        if image.get("bytes"):
            return Image.open(io.BytesIO(image["bytes"]))
        if image.get("path"):
            return Image.open(image["path"])
    raise BadImageError(f"not an image: {type(image).__name__}")


@contextmanager
def bombs_are_errors(max_pixels: int | None = None):
    """Pillow only warns, anonymously, about an image over its pixel limit; inside this block that is an error.

    Where max_pixels is the stricter limit the warning is silenced instead: check_pixels then refuses the image
    with a message naming the limit the user can change.
    """
    stricter = max_pixels is not None and Image.MAX_IMAGE_PIXELS and max_pixels <= Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if stricter else "error", Image.DecompressionBombWarning)
        yield


def check_pixels(img: Image.Image, label: str, max_pixels: int | None) -> None:
    """BadImageError naming the file if the header's width x height exceeds max_pixels (nothing is decoded).

    Over Pillow's own limit it is a DecompressionBombError too, whatever max_pixels says: Pillow's warning is
    process-wide state that a thread can miss, so the size is checked here as well.
    """
    w, h = img.size
    if max_pixels is not None and w * h > max_pixels:
        raise ImageTooLarge(f"image {label} is {w}x{h} = {w * h / 1e6:.1f} megapixels, over max_image_pixels="
                            f"{max_pixels:_} ({max_pixels / 1e6:.0f} megapixels), read from its header before "
                            "decoding; shrink it or raise the limit")
    if Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:
        raise Image.DecompressionBombError(f"{w}x{h} = {w * h / 1e6:.1f} megapixels is over Pillow's limit of "
                                           f"{Image.MAX_IMAGE_PIXELS / 1e6:.1f}")


def to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit or float image as 8-bit greyscale, its min..max stretched over 0..255 (not clipped at 255).

    A constant image keeps its level on the mode's nominal scale (0..65535 for 16-bit, 0..255 otherwise).
    """
    if img.mode not in WIDE_MODES:
        return img
    a = np.asarray(img).astype(np.float64)
    finite = np.isfinite(a)
    lo, hi = (float(a[finite].min()), float(a[finite].max())) if finite.any() else (0.0, 0.0)
    if hi > lo:
        out = (np.where(finite, a, lo) - lo) * (255.0 / (hi - lo))
    else:
        full = 65535.0 if img.mode.startswith("I;16") else 255.0
        out = np.full(a.shape, np.clip(lo * 255.0 / full, 0, 255))
    return Image.fromarray(np.round(out).astype(np.uint8), "L")


def describe_error(e: BaseException) -> str:
    """A short reason for a failure to open or decode an image, for messages that name the file."""
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"a possible decompression bomb (Pillow refuses it): {e}"
    if isinstance(e, UnidentifiedImageError):
        return "not an image Pillow can identify"
    return f"{type(e).__name__}: {e}"


def _describe(image) -> str:
    if isinstance(image, dict) and image.get("path"):
        return str(image["path"])
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    return f"<{type(image).__name__}>"
