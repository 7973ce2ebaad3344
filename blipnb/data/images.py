"""Open any image a user's folder may hold (paths, bytes, PIL, datasets rows) as an upright RGB PIL image."""
from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image, ImageOps

from ..errors import BadImageError


def to_rgb(image, name: str | None = None) -> Image.Image:
    """Return `image` as RGB: palette/alpha images go onto white, CMYK/greyscale convert, EXIF rotation applies."""
    label = name or _describe(image)
    try:
        img = open_image(image)
        img.load()
        img = ImageOps.exif_transpose(img)
    except BadImageError:
        raise
    except Exception as e:  # PIL raises many types for truncated or foreign files
        raise BadImageError(f"cannot read image {label}: {type(e).__name__}: {e}") from None
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


def _describe(image) -> str:
    if isinstance(image, dict) and image.get("path"):
        return str(image["path"])
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    return f"<{type(image).__name__}>"
