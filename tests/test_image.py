"""The image modality's parts on small pictures made here, with exact expected values."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageCms

from conftest import ROOT
from flows.config import ConfigError, load_config
from tasks.collect import collect_unit, discover
from tasks.dedup.steps import dedup_tables
from tasks.gates import metadata
from tasks.image import IMAGE, ImageCollectSettings, ImageSource
from tasks.image.decode import Undecodable, normalised, probe
from tasks.image.dedup import ImageDedupSettings
from tasks.image.export import ImageExportSettings, prepare_export, resize
from tasks.image.phash import hamming, phash
from tasks.image.preprocess import (ImagePreprocessSettings, filter_captions, filter_metadata, laplacian_variance,
                                    preprocess, signals)
from tasks.io.layout import RunPaths
from tasks.io.storage import Store


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def scene(width: int = 320, height: int = 240, seed: int = 0) -> Image.Image:
    """A picture with structure at every scale: smooth gradients plus random blocks."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    blocks = np.kron(rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3)), np.ones((16, 16, 1)))[:height, :width]
    pixels = (0.5 * blocks + 0.25 * (x[..., None] * 255 / width) + 0.25 * (y[..., None] * 255 / height))
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def records(pictures: dict[str, bytes], captions: dict[str, str] | None = None) -> pa.Table:
    rows = []
    for rid, data in pictures.items():
        info = probe(data, 10**8)
        rows.append({"id": rid, "image": {"bytes": data, "path": f"{rid}.png"}, **info, "bytes_size": len(data),
                     "caption": (captions or {}).get(rid), "source": "test", "source_index": 0, "meta": "{}"})
    return pa.Table.from_pylist(rows, schema=IMAGE.schema)


def test_probe_reads_format_size_mode_and_alpha_from_the_bytes():
    assert probe(encoded(Image.new("RGBA", (30, 20))), 10**6) == {
        "width": 30, "height": 20, "format": "PNG", "mode": "RGBA", "has_alpha": True}
    assert probe(encoded(scene(40, 30), "JPEG"), 10**6)["format"] == "JPEG"


@pytest.mark.parametrize("data,error", [
    (b"", "empty file (0 bytes)"),
    (b"GIF89a\x01", "starts as a GIF file but its header is corrupt"),
    (b"hello, world", "not a picture Pillow can read (12 bytes of text)"),
])
def test_probe_names_what_is_wrong(data, error):
    with pytest.raises(Undecodable, match=error.replace("(", r"\(").replace(")", r"\)")):
        probe(data, 10**6)


def test_probe_quarantines_truncated_files_and_decompression_bombs():
    whole = encoded(scene(), "JPEG")
    with pytest.raises(Undecodable, match="JPEG does not decode: image file is truncated"):
        probe(whole[: len(whole) // 2], 10**6)
    with pytest.raises(Undecodable, match=r"320x240 = 76,800 pixels exceeds max_pixels 76,799"):
        probe(whole, 76_799)


def test_normalised_applies_exif_orientation_16_bit_and_transparency():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rotated = normalised(encoded(scene(40, 20), "JPEG", exif=exif.tobytes()))
    assert rotated.size == (20, 40) and rotated.mode == "RGB"
    grey16 = Image.fromarray(np.full((4, 4), 0x8080, dtype=np.uint16))
    assert np.asarray(normalised(encoded(grey16))).tolist()[0][0] == [128, 128, 128]
    clear = Image.new("RGBA", (2, 1), (255, 0, 0, 0))
    clear.putpixel((1, 0), (255, 0, 0, 255))
    assert np.asarray(normalised(encoded(clear))).tolist() == [[[255, 255, 255], [255, 0, 0]]]


def test_normalised_keeps_srgb_pixels_and_decodes_a_jpeg_reduced_only_down_to_the_size_asked():
    picture = scene(320, 240)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert np.array_equal(np.asarray(normalised(encoded(picture, icc_profile=srgb))), np.asarray(picture))
    jpeg = encoded(scene(800, 600), "JPEG", quality=90)
    assert [normalised(jpeg, side).size for side in (None, 301, 300, 100)] == [(800, 600), (800, 600), (400, 300),
                                                                               (200, 150)]


def test_grey_cmyk_and_palette_pictures_hash_as_their_rgb_originals():
    """Exact dedup sees pixels, not modes: a real photo's grey, CMYK and palette-with-alpha files give the pixel
    hash of the RGB picture they show; a lossy CMYK JPEG is a near copy (pHash)."""
    photo = Image.open(ROOT / "examples" / "images" / "opencv_butterfly.jpg").convert("RGB")
    palette = photo.quantize(254)  # entries 254 and 255 stay free for the transparent blocks
    indices = np.asarray(palette).copy()
    indices[:40, :60], indices[40:80, :60] = 255, 254  # a clear and a half-transparent block
    with_alpha = Image.fromarray(indices, "P")
    with_alpha.putpalette(palette.getpalette()[:254 * 3] + [0, 0, 255, 0, 0, 0])
    alpha = bytes([255] * 254 + [128, 0])  # a tRNS chunk: one alpha per palette entry
    colours = np.array(with_alpha.getpalette()[:256 * 3], np.uint8).reshape(256, 3)
    rgba = Image.fromarray(np.dstack([colours[indices], np.frombuffer(alpha, np.uint8)[indices]]), "RGBA")
    grey = photo.convert("L")
    pairs = {"grey": (encoded(grey), encoded(grey.convert("RGB"))),
             "cmyk": (encoded(photo.convert("CMYK"), "TIFF"), encoded(photo)),
             "palette": (encoded(with_alpha, transparency=alpha), encoded(rgba))}
    assert Image.open(io.BytesIO(pairs["palette"][0])).mode == "P"
    for name, (variant, original) in pairs.items():
        assert signals(variant, False)["pixel_hash"] == signals(original, False)["pixel_hash"], name
    shown = np.asarray(normalised(pairs["palette"][0])).astype(int)
    colour = np.asarray(palette.convert("RGB")).astype(int)
    assert shown[0, 0].tolist() == [255, 255, 255]  # the clear block lies on white
    assert np.abs(shown[50, 10] - [127, 127, 255]).max() <= 1  # half-transparent blue on white
    assert (shown[100:] == colour[100:]).all()
    jpeg = signals(encoded(photo.convert("CMYK"), "JPEG", quality=95), False)
    assert hamming(np.frombuffer(jpeg["phash"], np.uint8)[None],
                   np.frombuffer(signals(encoded(photo), False)["phash"], np.uint8)[None])[0] <= 4


def test_metadata_rules_min_side_and_aspect_ratio():
    table = records({"ok": encoded(scene(300, 200)), "small": encoded(scene(300, 150)),
                     "wide": encoded(scene(800, 200)), "tall": encoded(scene(200, 700))})
    kept, rejected = filter_metadata(table, ImagePreprocessSettings())
    assert kept["id"].to_pylist() == ["ok"]
    assert list(zip(rejected["id"].to_pylist(), rejected["reason"].to_pylist())) == [
        ("small", "image.min_side: 150 < 200"), ("wide", "image.aspect_ratio: 4 outside 0.333..3"),
        ("tall", "image.aspect_ratio: 0.286 outside 0.333..3")]


def test_caption_rules_normalise_then_bound_the_length():
    table = records({p: encoded(scene(seed=i)) for i, p in enumerate(["a", "b", "c", "d"])},
                    {"a": "  A  \x1b[31mred\x1b[0m   cup ", "b": "", "c": "x" * 30})
    settings = ImagePreprocessSettings(caption={"max_chars": 20, "required": True}).caption
    kept, rejected = filter_captions(table, settings)
    assert kept["caption"].to_pylist() == ["A  red   cup"]
    assert list(zip(rejected["id"].to_pylist(), rejected["reason"].to_pylist())) == [
        ("b", "caption.min_chars: 0 < 1"), ("c", "caption.max_chars: 30 > 20"), ("d", "caption.required: none")]


def test_laplacian_variance_is_zero_on_flat_and_high_on_edges():
    assert laplacian_variance(np.full((10, 10), 7, dtype=np.uint8)) == 0.0
    checker = (np.indices((4, 4)).sum(axis=0) % 2 * 255).astype(np.uint8)
    assert laplacian_variance(checker) == 1020.0 ** 2  # every inner pixel is +-4*255: the sharpest there is
    edge = np.zeros((5, 5), dtype=np.uint8)
    edge[:, 3:] = 100
    assert laplacian_variance(edge) == pytest.approx(np.var([100, -100, 0] * 3))


def test_pixel_rules_and_signals_on_one_decode():
    flat = Image.new("RGB", (300, 300), (90, 90, 90))
    smooth = Image.fromarray(np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (300, 1)), "L")
    table = records({"scene": encoded(scene(300, 300)), "flat": encoded(flat), "smooth": encoded(smooth)})
    kept, rejected = preprocess(table, ImagePreprocessSettings())
    assert kept["id"].to_pylist() == ["scene"]
    assert [(r, rule) for r, rule in zip(rejected["id"].to_pylist(), rejected["rule"].to_pylist())] == [
        ("flat", "image.blank"), ("smooth", "image.blur")]
    assert rejected["reason"].to_pylist()[0] == "image.blank: 0 < 2"
    assert kept["phash"].type == pa.binary(8) and kept["pixel_hash"].type == pa.binary(16)


def test_phash_is_stable_under_resizing_and_reencoding_and_far_between_pictures():
    a, b = scene(seed=1), scene(seed=2)
    ha = np.frombuffer(phash(a), dtype=np.uint8)[None]
    small = Image.open(io.BytesIO(encoded(a.resize((160, 120)), "JPEG", quality=70)))
    assert hamming(ha, np.frombuffer(phash(small), dtype=np.uint8)[None])[0] <= 4
    assert hamming(ha, np.frombuffer(phash(b), dtype=np.uint8)[None])[0] > 16
    assert hamming(np.array([[0xFF] + [0] * 7], np.uint8), np.array([[0x0F] + [0] * 7], np.uint8)).tolist() == [4]


def test_image_dedup_clusters_copies_keeps_the_largest_and_separates_different_pictures():
    a, b = scene(400, 300, seed=1), scene(400, 300, seed=2)
    pictures = {"a-small": encoded(a.resize((200, 150)), "JPEG"), "a": encoded(a), "a-webp": encoded(a, "WEBP",
                lossless=True), "b": encoded(b, "JPEG", quality=90)}
    clean, _ = preprocess(records(pictures), ImagePreprocessSettings(min_side={"min_side": 100}))
    ((kept, rejected, _),), _, stats = dedup_tables([clean], ImageDedupSettings())
    assert sorted(kept["id"].to_pylist()) == ["a", "b"]
    assert sorted(zip(rejected["id"].to_pylist(), rejected["rule"].to_pylist(), rejected["duplicate_of"].to_pylist())) == [
        ("a-small", "dedup.near", "a"), ("a-webp", "dedup.exact", "a")]
    assert stats["cluster_sizes"] == {3: 1}


@pytest.mark.parametrize("mode,upscale,size,expected", [
    ("none", False, (400, 300), (400, 300)), ("keep_ratio", False, (400, 300), (341, 256)),
    ("center_crop", False, (400, 300), (256, 256)), ("border", False, (400, 300), (256, 256)),
    ("keep_ratio", False, (100, 50), (100, 50)), ("keep_ratio", True, (100, 50), (512, 256)),
    ("center_crop", False, (100, 50), (50, 50)), ("border", False, (100, 50), (256, 256)),
])
def test_resize_modes_follow_img2dataset(mode, upscale, size, expected):
    picture = resize(scene(*size), ImageExportSettings(resize_mode=mode, upscale=upscale))
    assert picture.size == expected


def test_prepare_export_reencodes_and_records_sizes():
    table = records({"p": encoded(scene(400, 300))})
    out = prepare_export(table, ImageExportSettings(resize_mode="center_crop", size=64, image_format="WEBP"))
    row = out.to_pylist()[0]
    assert (row["width"], row["height"], row["format"], row["original_width"], row["source_format"]) == (
        64, 64, "WEBP", 400, "PNG")
    assert Image.open(io.BytesIO(row["image"]["bytes"])).format == "WEBP" and row["image"]["path"] == "p.webp"


def test_webdataset_shards_hold_the_parquet_rows_and_load_in_datasets(tmp_path):
    from datasets import load_dataset

    from tasks.export import export_split

    store = Store(str(tmp_path))
    table = records({"a": encoded(scene(300, 200)), "b": encoded(scene(200, 300, seed=1))}, {"a": "a red cup"})
    store.write_table(table, "in", "part-00000.parquet")
    settings = ImageExportSettings(format="webdataset", size=64, splits={"train": 1, "validation": 0, "test": 0})
    result = export_split(store, [("in", "part-00000.parquet")], "train", settings, "v1", IMAGE)
    assert result["shards"][0]["webdataset"] == "train/part-00000.tar"
    with tarfile.open(tmp_path / "versions/v1/train/part-00000.tar") as tar:
        assert tar.getnames() == ["000000.jpg", "000000.txt", "000000.json", "000001.jpg", "000001.txt",
                                 "000001.json"]
        assert json.load(tar.extractfile("000001.json"))["id"] == "b"
    loaded = load_dataset("webdataset", data_files=str(tmp_path / "versions/v1/train/*.tar"), split="train")
    assert [row["json"]["id"] for row in loaded] == ["a", "b"]
    assert loaded[0]["jpg"].size == (64, 64) and loaded[0]["txt"] == "a red cup" and loaded[1]["txt"] == ""


def test_nsfw_score_comes_from_the_model_in_the_wheel():
    table = records({"p": encoded(scene(300, 300))})
    settings = ImagePreprocessSettings(nsfw={"enabled": True, "max_score": 0.0})
    kept, rejected = preprocess(table, settings)
    assert kept.num_rows == 0 and rejected["rule"].to_pylist() == ["image.nsfw"]
    assert 0 < rejected["nsfw_score"][0].as_py() < 1


def test_collect_reads_pictures_named_by_a_table_with_captions(tmp_path):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "one.png").write_bytes(encoded(scene(50, 40)))
    (tmp_path / "pairs.jsonl").write_text(
        '{"file": "pics/one.png", "text": "a cup", "license": "cc0"}\n{"file": "pics/missing.png", "text": "gone"}\n'
        '{"text": "no picture"}\n')
    sources = [ImageSource(uri=str(tmp_path / "pairs.jsonl"), image_field="file", caption_field="text")]
    result = collect_unit(discover(sources, IMAGE), sources, ImageCollectSettings(), IMAGE, Store(str(tmp_path / "out")),
                          RunPaths("r"), 0)
    assert result.counts.as_dict() == {"in": 3, "kept": 1, "rejected": {}, "quarantined": 2}
    row = pq.read_table(tmp_path / "out/runs/r/collect" / result.shards[0]["name"]).to_pylist()[0]
    assert (row["width"], row["height"], row["caption"], json.loads(row["meta"])) == (50, 40, "a cup", {"license": "cc0"})
    assert row["image"]["path"] == "pics/one.png"
    bad = pq.read_table(tmp_path / "out/runs/r/collect/_quarantine/part-00000.parquet").to_pylist()
    assert [(b["line"], b["error"].split(":")[0]) for b in bad] == [
        (2, "cannot read picture pics/missing.png"), (3, "missing picture field 'file' (fields")]


def test_gates_see_metadata_only():
    table = records({"p": encoded(scene(20, 20))})
    seen = metadata(table.append_column("phash", pa.array([b"\x01" * 8], pa.binary(8))))
    assert "image" not in seen.column_names and seen["phash"].to_pylist() == ["0101010101010101"]


def test_config_sections_follow_the_modality(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("modality: image\nsources: [{uri: 'x/*', caption_field: c}]\noutput: o\n"
                    "preprocess: {blur: {min_laplacian_var: 5}}\nexport: {size: 128}\n")
    config = load_config(path)
    assert (config.preprocess.blur.min_laplacian_var, config.export.size, config.sources[0].caption_field) == (5, 128, "c")
    assert config.dedup.keep == "largest"
    path.write_text("modality: image\nsources: [{uri: x, text_field: body}]\noutput: o\npreprocess: {c4: {}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "sources.0.text_field: unknown key" in str(err.value) and "preprocess.c4: unknown key" in str(err.value)
