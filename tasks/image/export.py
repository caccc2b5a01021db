"""Training-ready pictures: resized as img2dataset's resize modes name them and re-encoded, so every
exported row's `image` is what a training loop should see.

- none: the normalised picture at its own size;
- keep_ratio: the shorter side becomes `size`;
- center_crop: the shorter side becomes `size`, then the centre square is cut;
- border: the longer side becomes `size`, then white borders make it square.
Pictures are not enlarged unless `upscale` is set (a smaller picture keeps its size; center_crop then cuts
its largest centre square, border pads it to `size`).
"""

from __future__ import annotations

import io
from typing import Literal

import pyarrow as pa
from PIL import Image
from pydantic import Field

from tasks.export import MediaExportSettings
from tasks.image.decode import normalised
from tasks.records import MEDIA_TYPE

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


class ImageExportSettings(MediaExportSettings):
    resize_mode: Literal["none", "keep_ratio", "center_crop", "border"] = Field(
        "border", description="img2dataset's resize modes")
    size: int = Field(256, ge=8, description="target size in pixels (see resize_mode)")
    upscale: bool = Field(False, description="enlarge pictures smaller than the target")
    image_format: Literal["JPEG", "PNG", "WEBP"] = Field("JPEG", description="encoding of the exported pictures")
    quality: int = Field(95, ge=1, le=100, description="JPEG/WebP quality")


def resize(image: Image.Image, settings: ImageExportSettings) -> Image.Image:
    mode, size = settings.resize_mode, settings.size
    if mode == "none":
        return image
    w, h = image.size
    scale = size / (max(w, h) if mode == "border" else min(w, h))
    if scale < 1 or settings.upscale:
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    w, h = image.size
    if mode == "center_crop":
        side = min(w, h, size)
        left, top = (w - side) // 2, (h - side) // 2
        return image.crop((left, top, left + side, top + side))
    if mode == "border":
        canvas = Image.new("RGB", (size, size), (255, 255, 255))
        canvas.paste(image, ((size - w) // 2, (size - h) // 2))
        return canvas
    return image


def encode(image: Image.Image, settings: ImageExportSettings) -> bytes:
    out = io.BytesIO()
    options = {"quality": settings.quality} if settings.image_format in ("JPEG", "WEBP") else {}
    image.save(out, settings.image_format, **options)
    return out.getvalue()


def prepare_export(table: pa.Table, settings: ImageExportSettings) -> pa.Table:
    """Each picture normalised, resized and encoded; width, height, format, mode and size follow it, and
    the collected ones stay as original_width, original_height and source_format."""
    images, widths, heights, sizes = [], [], [], []
    ext = EXTENSIONS[settings.image_format]
    for rid, image in zip(table["id"].to_pylist(), table["image"].to_pylist()):
        picture = resize(normalised(image["bytes"], None if settings.resize_mode == "none" else settings.size),
                         settings)
        data = encode(picture, settings)
        images.append({"bytes": data, "path": f"{rid}.{ext}"})
        widths.append(picture.width)
        heights.append(picture.height)
        sizes.append(len(data))
    n = table.num_rows
    replaced = {"image": pa.array(images, MEDIA_TYPE), "width": pa.array(widths, pa.int32()),
                "height": pa.array(heights, pa.int32()), "format": pa.array([settings.image_format] * n, pa.string()),
                "mode": pa.array(["RGB"] * n, pa.string()), "has_alpha": pa.array([False] * n, pa.bool_()),
                "bytes_size": pa.array(sizes, pa.int64())}
    table = (table.append_column("original_width", table["width"]).append_column("original_height", table["height"])
             .append_column("source_format", table["format"]))
    for name, column in replaced.items():
        table = table.set_column(table.schema.get_field_index(name), name, column)
    return table
