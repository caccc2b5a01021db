"""The image pipeline end to end on the shared real pictures plus broken files and converted copies made
here, on a real multi-process Dask cluster and a real (temporary) Prefect server."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from media_runs import dedup_outcome, read, shard_accounting
from flows.config import PipelineConfig
from flows.curate import run_pipeline
from tasks.image.decode import normalised

SHARED = ROOT.parent / "shared" / "data"
IMAGES = SHARED / "images"
pytestmark = pytest.mark.skipif(not IMAGES.is_dir(), reason="needs the shared sample pictures")

spec = importlib.util.spec_from_file_location("make_image_examples", ROOT / "examples" / "make_image_examples.py")
make_image_examples = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_image_examples)


def image_config(tmp: Path, **extra) -> dict:
    """The shared pictures plus the made ones, small shards, thresholds for small pictures, 128 px crops."""
    return {"modality": "image",
            "sources": [{"uri": str(IMAGES / "*")}, {"uri": str(tmp / "made" / "*")}],
            "output": str(tmp / "out"),
            "collect": {"shard_rows": 25, "max_pixels": 5_000_000},
            "preprocess": {"min_side": {"min_side": 16}, "aspect_ratio": {"max_ratio": 8},
                           "blur": {"min_laplacian_var": 0.5}},
            "export": {"version": "v1", "resize_mode": "center_crop", "size": 128, "upscale": True,
                       "splits": {"train": 0.8, "validation": 0.1, "test": 0.1}}, **extra}


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("images")
    copies = make_image_examples.make(IMAGES, tmp / "made")
    return run_pipeline(PipelineConfig.model_validate(image_config(tmp))), tmp / "out", copies


def groups(copies: dict[str, str]) -> dict[str, str]:
    """File name -> duplicate group: the shared manifest's dup_group, a converted copy's source's group, or
    the file itself."""
    manifest = [json.loads(line) for line in (SHARED / "images_manifest.jsonl").read_text().splitlines()]
    group = {Path(m["file"]).name: m["dup_group"] or Path(m["file"]).name for m in manifest}
    return group | {copy: group[source] for copy, source in copies.items()}


def test_counts_per_stage_and_rule(image_run):
    summary, _, _ = image_run
    assert summary["stages"] == {
        "collect": {"in": 77, "kept": 70, "rejected": {}, "quarantined": 7},
        "preprocess": {"in": 70, "kept": 62, "rejected": {"image.blank": 7, "image.min_side": 1}, "quarantined": 0},
        "dedup": {"in": 62, "kept": 36, "rejected": {"dedup.near": 18, "dedup.exact": 8}, "quarantined": 0},
        "export": {"in": 36, "kept": 36, "rejected": {}, "quarantined": 0}}
    assert summary["splits"] == {"train": 32, "validation": 2, "test": 2}
    assert summary["gates"] == {"raw": True, "clean": True, "dedup": True, "export": True}


def test_quarantine_names_each_broken_file_and_the_decoders_error(image_run):
    summary, out, _ = image_run
    bad = read((out / "runs" / summary["run_id"] / "collect" / "_quarantine").glob("*.parquet")).to_pylist()
    assert sorted((Path(b["source"]).name, b["line"], b["error"]) for b in bad) == [
        ("bad-crc.png", 1, "starts as a PNG file but its header is corrupt (a bad chunk or checksum): Pillow cannot open it"),
        ("empty.jpg", 1, "empty file (0 bytes)"),
        ("noise.png", 1, "not a picture Pillow can read (4096 bytes of binary data)"),
        ("page.jpg", 1, "not a picture Pillow can read (55 bytes of text)"),
        ("truncated.jpg", 1, "JPEG does not decode: image file is truncated (35 bytes not processed)"),
        ("truncated.png", 1, "PNG does not decode: image file is truncated"),
        ("ukui_desert.png", 1, "3640x2400 = 8,736,000 pixels exceeds max_pixels 5,000,000 (decompression bomb guard)")]


def test_every_shard_accounts_for_every_record(image_run):
    summary, out, _ = image_run
    assert len(shard_accounting(out / "runs" / summary["run_id"])) == 3  # 70 pictures, 25 per shard at most


def test_each_duplicate_group_keeps_one_picture_and_no_two_groups_merge(image_run):
    summary, out, copies = image_run
    survivors, merged, by_rule = dedup_outcome(out / "runs" / summary["run_id"], groups(copies))
    assert {g: names for g, names in survivors.items() if len(names) > 1} == {}  # one picture per group
    assert merged == []
    assert [name for rule, name in by_rule if rule == "dedup.exact"] == [
        "aero1.bmp", "coins-16bit.png",  # lossless copies of a JPEG and an 8-bit PNG: the same pixels
        "debbase_icons_hicolor_256x256_emblems_emblem-debian.png",
        "debbase_plymouth_themes_futureprototype_password_dot16.png",
        "debbase_plymouth_themes_homeworld_password_dot16.png",
        "debbase_plymouth_themes_moonlight_password_dot16.png",
        "debbase_plymouth_themes_softwaves_password_dot16.png", "shakespeare_shkspr_droeshout.png"]
    kept_names = {name for names in survivors.values() for name in names}
    assert {"debbase_icons_desktop-base_256x256_emblems_emblem-debian.png", "opencv_butterfly.jpg",
            "mate_GreenMeadow.jpg", "plasma_DarkestHour_2560x1600.jpg", "opencv_left13.jpg",
            "opencv_right13.jpg"} <= kept_names  # the largest of each cluster; stereo pairs are not duplicates


def test_exported_shards_load_in_datasets_as_pictures_of_the_target_size(image_run):
    from datasets import load_dataset

    summary, out, _ = image_run
    files = sorted(str(p) for p in (out / "versions" / "v1" / "train").glob("*.parquet"))
    train = load_dataset("parquet", data_files=files, split="train")
    assert len(train) == summary["splits"]["train"]
    first = train[0]["image"]
    assert type(first).__module__.startswith("PIL.") and first.size == (128, 128) and first.mode == "RGB"
    assert {im.size for im in train["image"]} == {(128, 128)}
    manifest = json.loads((out / "versions" / "v1" / "manifest.json").read_text())
    assert manifest["modality"] == "image" and manifest["pixels"]["count"] == 128 * 128 * summary["documents"]
    assert manifest["source_formats"] == {"PNG": 11, "JPEG": 25} and manifest["sizes"] == {"128-255": 36}
    assert len(manifest["pixels"]["mean"]) == len(manifest["pixels"]["std"]) == 3
    assert all(0.2 < m < 0.8 for m in manifest["pixels"]["mean"]) and all(0.1 < s < 0.5 for s in manifest["pixels"]["std"])
    report = (out / "versions" / "v1" / "report.html").read_text()
    assert report.count('src="data:image/jpeg;base64,') >= 10
    card = (out / "versions" / "v1" / "README.md").read_text()
    assert "transforms.Normalize(mean=[" in card and 'load_dataset("parquet", data_files=files' in card


def test_an_incremental_run_takes_new_files_only_and_drops_copies_of_published_pictures(image_run, tmp_path):
    summary, first_out, _ = image_run
    tmp = first_out.parent
    out = tmp_path / "out"
    shutil.copytree(first_out, out)
    exported = read((first_out / "versions" / "v1").glob("*/*.parquet")).sort_by("id").to_pylist()
    lossless, resized = (Image.open(row["source"]) for row in exported[:2])
    (tmp_path / "incoming").mkdir()
    lossless.save(tmp_path / "incoming" / "lossless.png")  # the same pixels as a published picture
    resized.resize((resized.width * 3 // 4, resized.height * 3 // 4)).convert("RGB").save(
        tmp_path / "incoming" / "smaller.jpg", quality=80)
    rng = np.random.default_rng(7)
    blocks = np.kron(rng.integers(0, 256, (12, 16, 3)), np.ones((16, 16, 1))).astype(np.uint8)
    Image.fromarray(blocks, "RGB").save(tmp_path / "incoming" / "fresh.png")
    config = image_config(tmp, incremental=True, output=str(out))
    config["sources"].append({"uri": str(tmp_path / "incoming" / "*")})
    config["export"] |= {"version": "v2", "format": "webdataset"}

    second = run_pipeline(PipelineConfig.model_validate(config))
    assert second["stages"]["collect"]["in"] == 3  # the ledger holds every file of the first run
    assert second["stages"]["dedup"] == {"in": 3, "kept": 1, "quarantined": 0,
                                         "rejected": {"dedup.exact": 1, "dedup.near": 1}}
    removed = read((out / "runs" / second["run_id"] / "dedup" / "_rejected").glob("*.parquet")).to_pylist()
    assert sorted((Path(r["source"]).name, r["duplicate_of"]) for r in removed) == [
        ("lossless.png", exported[0]["id"]), ("smaller.jpg", exported[1]["id"])]
    manifest = json.loads((out / "versions" / "v2" / "manifest.json").read_text())
    assert (manifest["base_version"], manifest["documents"]) == ("v1", summary["documents"] + 1)
    own = [s for split in manifest["splits"].values() for s in split["shards"] if s["version"] == "v2"]
    assert len(own) == 1 and (out / "versions" / "v2" / own[0]["webdataset"]).is_file()


def test_a_grey_profile_is_applied_to_grey_pixels_alpha_kept():
    """A real file's 'Dot Gain 20%' grey profile brightens mid-greys as an ICC-aware viewer shows them."""
    icc = Image.open(IMAGES / "skimage_page.png").info["icc_profile"]
    grey = Image.fromarray(np.array([[0, 64, 128, 192, 255]], dtype=np.uint8), "L")
    clear_first = Image.merge("LA", [grey, Image.fromarray(np.array([[0, 255, 255, 255, 255]], dtype=np.uint8))])
    for picture, shown in ((grey, (0, 85, 149, 205, 255)), (clear_first, (255, 85, 149, 205, 255))):
        out = io.BytesIO()
        picture.save(out, "PNG", icc_profile=icc)
        assert np.asarray(normalised(out.getvalue()))[0].tolist() == [[v] * 3 for v in shown]
