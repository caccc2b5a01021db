"""What the manifest, card and report show of an image dataset: source formats, sizes, the per-channel
mean and std of the exported pixels (a training transform's `Normalize`), and pictures as thumbnails."""

from __future__ import annotations

import base64
import io
from collections import Counter
from html import escape

import numpy as np
import pyarrow as pa
from PIL import Image

from tasks.export import load_snippet
from tasks.export.report import bar_chart
from tasks.image.decode import normalised

SIDE_EDGES = (0, 64, 128, 256, 512, 1024, 2048, 4096)  # pixels, the longer side
SIDE_BINS = tuple(f"{lo}-{hi - 1}" for lo, hi in zip(SIDE_EDGES, SIDE_EDGES[1:])) + (f">={SIDE_EDGES[-1]}",)
THUMBNAIL = 160


def side_bins(widths, heights) -> dict:
    longer = np.maximum(np.asarray(widths, dtype=np.int64), np.asarray(heights, dtype=np.int64))
    at = np.searchsorted(SIDE_EDGES, longer, side="right") - 1
    return {SIDE_BINS[i]: int(n) for i, n in enumerate(np.bincount(at, minlength=len(SIDE_BINS))) if n}


def of_table(table: pa.Table) -> dict:
    """Additive statistics of exported rows; pixel moments are over values scaled to 0..1."""
    total, squares, count = np.zeros(3), np.zeros(3), 0
    for image in table["image"].to_pylist():
        pixels = np.asarray(Image.open(io.BytesIO(image["bytes"])).convert("RGB"), dtype=np.float64) / 255
        total += pixels.sum(axis=(0, 1))
        squares += (pixels ** 2).sum(axis=(0, 1))
        count += pixels.shape[0] * pixels.shape[1]
    original = "original_width" in table.column_names
    return {"source_formats": dict(Counter(table["source_format"].to_pylist())) if "source_format" in table.column_names
            else {},
            "source_sizes": side_bins(table["original_width" if original else "width"],
                                      table["original_height" if original else "height"]),
            "sizes": side_bins(table["width"], table["height"]),
            "pixels": {"count": count, "sum": total.tolist(), "sumsq": squares.tolist()}}


def normalize(manifest: dict) -> tuple[list[float], list[float]] | None:
    """Per-channel mean and std of the exported pixels, as the manifest records them."""
    pixels = manifest.get("pixels") or {}
    return (pixels["mean"], pixels["std"]) if "mean" in pixels else None


def ordered(counts: dict, bins: tuple) -> list[tuple[str, int]]:
    return [(b, counts[b]) for b in bins if counts.get(b)]


def charts(manifest: dict) -> list[str]:
    stats = normalize(manifest)
    moments = (f"<p>Exported pixels, per channel (R, G, B, scaled to 0..1): mean {stats[0]}, std {stats[1]}</p>"
               if stats else "")
    return [bar_chart("Source formats (this version)", Counter(manifest.get("source_formats", {})).most_common(),
                      "#4c78a8"),
            bar_chart("Longer side of the source pictures, pixels (this version)",
                      ordered(manifest.get("source_sizes", {}), SIDE_BINS), "#59a14f"),
            bar_chart("Longer side as exported, pixels (this version)", ordered(manifest.get("sizes", {}), SIDE_BINS),
                      "#76b7b2") + moments]


def card(manifest: dict) -> str:
    stats = normalize(manifest)
    formats = "\n".join(f"| {f} | {n} |" for f, n in Counter(manifest.get("source_formats", {})).most_common())
    export = manifest.get("config", {}).get("export", {})
    mean, std = stats or ([0.5] * 3, [0.5] * 3)
    loader = f"""from datasets import load_dataset

train = load_dataset("parquet", data_files=files, split="train")  # `image` decodes to a PIL image
# torchvision-style transforms, normalised with this version's statistics:
from torchvision import transforms
to_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean={mean}, std={std})])
train = train.with_transform(lambda batch: {{"pixels": [to_tensor(im) for im in batch["image"]], **batch}})"""
    return (f"## Pictures\nExported as {export.get('image_format', 'JPEG')}, resize mode "
            f"`{export.get('resize_mode', 'border')}` to {export.get('size', 256)} px "
            f"({'enlarging smaller ones' if export.get('upscale') else 'never enlarged'}).\n\n"
            f"Per-channel mean {mean} and std {std} of the exported pixels (R, G, B, scaled to 0..1).\n\n"
            f"| source format | pictures |\n|---|---|\n{formats}\n\n## Load it\n{load_snippet(manifest, loader)}")


def thumbnail(data: bytes) -> str:
    """A small inline JPEG of a picture, or a note where it does not decode."""
    try:
        image = normalised(data, THUMBNAIL)
    except Exception as e:  # a report shows what it can
        return f"<p>(no preview: {escape(str(e))})</p>"
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return f'<img alt="" src="data:image/jpeg;base64,{base64.b64encode(out.getvalue()).decode()}">'


def example(row: dict) -> str:
    image = row.get("image") or {}
    caption = f"<p>{escape(row['caption'][:120])}</p>" if row.get("caption") else ""
    size = f"{row.get('width')}x{row.get('height')} {row.get('format') or ''}"
    return f"{thumbnail(image.get('bytes') or b'')}<p>{escape(size)}</p>{caption}"
