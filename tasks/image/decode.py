"""Decoding pictures: what collect checks (every file decodes fully, within a pixel cap) and the one
normalisation every later stage sees (EXIF orientation, 8-bit sRGB, transparency flattened onto white).

Pillow reads the format from the bytes, never from the name; pillow-heif adds HEIC (Pillow reads AVIF).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

from tasks.io.readers import unknown_bytes

register_heif_opener()
Image.MAX_IMAGE_PIXELS = None  # the configured cap (`max_pixels`) is checked before any pixel is decoded
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, Image.DecompressionBombError)
MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP", b"II*\x00": "TIFF",
         b"MM\x00*": "TIFF"}


class Undecodable(ValueError):
    """Bytes that are not a whole picture; the message says what the decoder said."""


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def probe(data: bytes, max_pixels: int) -> dict:
    """Format, size, mode and alpha of a picture that decodes completely; else `Undecodable`."""
    if not data:
        raise Undecodable("empty file (0 bytes)")
    image = None  # Image.open itself may fail with a decode error
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise Undecodable(f"{width}x{height} = {width * height:,} pixels exceeds max_pixels {max_pixels:,} "
                              "(decompression bomb guard)")
        image.load()
    except Undecodable:
        raise
    except UnidentifiedImageError:
        kind = next((name for magic, name in MAGIC.items() if data.startswith(magic)), None)
        if kind:
            raise Undecodable(f"starts as a {kind} file but its header is corrupt (a bad chunk or checksum): "
                              "Pillow cannot open it") from None
        raise Undecodable(f"not a picture Pillow can read ({unknown_bytes(data)})") from None
    except DECODE_ERRORS as e:
        raise Undecodable(f"{getattr(image, 'format', None) or 'picture'} does not decode: {e}") from None
    return {"width": width, "height": height, "format": image.format, "mode": image.mode, "has_alpha": has_alpha(image)}


def to_8bit(image: Image.Image) -> Image.Image:
    """16- and 32-bit greyscale scaled to 8-bit (Pillow's own convert clips them instead)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return Image.fromarray((np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8), "L")
    if image.mode == "I":
        return Image.fromarray((np.asarray(image).clip(0, 65535).astype(np.uint32) >> 8).astype(np.uint8), "L")
    if image.mode == "F":
        return Image.fromarray((np.asarray(image).clip(0, 1) * 255).round().astype(np.uint8), "L")
    return image


def is_srgb(icc: bytes) -> bool:
    """An embedded sRGB profile (what most cameras and editors write): its pixels are sRGB already."""
    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).startswith("sRGB")
    except (ImageCms.PyCMSError, OSError):
        return False


def in_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """Colour through its embedded profile into sRGB RGB, alpha carried across. The profile is applied to
    the mode it was made for (a grey profile to grey pixels, CMYK to CMYK), before any mode change; a
    profile that does not fit or is broken leaves the pixels taken as sRGB, as browsers do."""
    colour = image.convert({"1": "L", "LA": "L", "La": "L", "P": "RGB", "PA": "RGB", "RGBA": "RGB",
                            "RGBa": "RGB"}.get(image.mode, image.mode))
    try:
        out = ImageCms.profileToProfile(colour, ImageCms.ImageCmsProfile(io.BytesIO(icc)), SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError):
        return image
    if has_alpha(image):
        out.putalpha(image.convert("RGBA").getchannel("A"))
    return out


def normalised(data: bytes, at_least: int | None = None) -> Image.Image:
    """The picture as a person sees it: EXIF-oriented, 8-bit sRGB RGB, transparency on white. No step copies
    a picture that is already as it should be. With `at_least`, a JPEG decodes reduced (1/2 to 1/8, in
    the DCT) while both sides stay at least that: for a picture that is shrunk anyway, most of its decode."""
    image = Image.open(io.BytesIO(data))
    if at_least:
        image.draft(None, (at_least, at_least))
    ImageOps.exif_transpose(image, in_place=True)
    icc = image.info.get("icc_profile")
    image = to_8bit(image)
    if icc and not is_srgb(icc):
        image = in_srgb(image, icc)
    alpha = has_alpha(image)
    mode = "RGBA" if alpha else "RGB"
    if image.mode != mode:
        image = image.convert(mode)
    if alpha:
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image, mask=image.getchannel("A"))
        image = white
    return image
