"""The audio pipeline end to end on the shared real clips plus broken files and converted copies made here,
on a real multi-process Dask cluster and a real (temporary) Prefect server."""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT
from media_runs import dedup_outcome, read, shard_accounting
from flows.config import PipelineConfig
from flows.curate import run_pipeline

SHARED = ROOT.parent / "shared" / "data"
AUDIO = SHARED / "audio"
pytestmark = pytest.mark.skipif(not AUDIO.is_dir(), reason="needs the shared sample clips")

spec = importlib.util.spec_from_file_location("make_audio_examples", ROOT / "examples" / "make_audio_examples.py")
make_audio_examples = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_audio_examples)
# The same channel prompt ships in ALSA's and freedesktop's sound themes (1.525 s each, fingerprints 4% apart):
# a real duplicate pair the shared manifest does not mark.
SAME_RECORDING = {"fdo_audio-channel-rear-right.oga": "alsa_Rear_Right.wav"}


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audio")
    copies = make_audio_examples.make(AUDIO, tmp / "made")
    config = PipelineConfig.model_validate({
        "modality": "audio",
        "sources": [{"uri": str(AUDIO / "*")}, {"uri": str(tmp / "made" / "*")}],
        "output": str(tmp / "out"),
        "collect": {"shard_rows": 25},
        "export": {"version": "v1", "format": "webdataset", "log_mel": {"enabled": True},
                   "splits": {"train": 0.8, "validation": 0.1, "test": 0.1}},
    })
    return run_pipeline(config), tmp / "out", copies


def groups(copies: dict[str, str]) -> dict[str, str]:
    """File name -> recording: a copy's source, the known same-recording pair, or the file itself."""
    manifest = [json.loads(line) for line in (SHARED / "audio_manifest.jsonl").read_text().splitlines()]
    group = {Path(m["file"]).name: Path(m["file"]).name for m in manifest} | SAME_RECORDING
    return group | {copy: source for copy, source in copies.items()}


def test_counts_per_stage_and_rule(audio_run):
    summary, _, _ = audio_run
    assert summary["stages"] == {
        "collect": {"in": 68, "kept": 62, "rejected": {}, "quarantined": 6},
        "preprocess": {"in": 62, "kept": 52, "quarantined": 0, "rejected": {
            "audio.min_duration": 8, "audio.clipping": 1, "audio.silence": 1}},
        "dedup": {"in": 52, "kept": 42, "rejected": {"dedup.near": 8, "dedup.exact": 2}, "quarantined": 0},
        "export": {"in": 42, "kept": 42, "rejected": {}, "quarantined": 0}}
    assert summary["splits"] == {"train": 38, "validation": 3, "test": 1}
    assert summary["gates"] == {"raw": True, "clean": True, "dedup": True, "export": True}


def test_quarantine_names_each_broken_file_and_the_decoders_error(audio_run):
    summary, out, _ = audio_run
    bad = read((out / "runs" / summary["run_id"] / "collect" / "_quarantine").glob("*.parquet")).to_pylist()
    assert sorted((Path(b["source"]).name, b["error"]) for b in bad) == [
        ("cut.mp3", "truncated: the MP3 header declares 1.56 s, 0.73 s decode"),
        ("cut.ogg", "truncated: the file ends inside Ogg page 5 (903 of its 4362 bytes) (0.63 s decode)"),
        ("cut.wav", "truncated: the WAV header declares 1.35 s, 0.68 s decode"),
        ("empty.wav", "empty file (0 bytes)"),
        ("header-only.wav", "WAV file with no audio samples (a header without data)"),
        ("page.mp3", "not audio libsndfile or FFmpeg can decode (libsndfile: Format not recognised; FFmpeg: not "
                     "opened: its first bytes match none of the containers curate reads with FFmpeg (MP4/M4A, "
                     "MKV/WebM, ASF/WMA, MP3, AAC, AC3, Ogg, FLAC, WAV, AIFF, AMR, CAF)); 55 bytes of text")]


def test_each_rule_keeps_what_it_measured(audio_run):
    summary, out, _ = audio_run
    rejected = read((out / "runs" / summary["run_id"] / "preprocess" / "_rejected").glob("*.parquet"))
    reasons = {Path(s).name: r for s, r in zip(rejected["source"].to_pylist(), rejected["reason"].to_pylist())}
    assert {name: reasons[name] for name in ("klettres_tn_alpha_i.ogg", "wesnoth_silence.ogg", "yaru_bell.oga")} == {
        "klettres_tn_alpha_i.ogg": "audio.clipping: 0.128 > 0.01",          # 12.8% of its samples at full scale
        "wesnoth_silence.ogg": "audio.silence: 1 > 0.9",
        "yaru_bell.oga": "audio.min_duration: 0.289 < 0.5 s"}


def test_every_shard_accounts_for_every_record(audio_run):
    summary, out, _ = audio_run
    assert len(shard_accounting(out / "runs" / summary["run_id"])) == 3  # 62 clips, 25 per shard at most


def test_each_recording_keeps_one_clip_and_no_two_recordings_merge(audio_run):
    summary, out, copies = audio_run
    survivors, merged, by_rule = dedup_outcome(out / "runs" / summary["run_id"], groups(copies))
    assert {g: names for g, names in survivors.items() if len(names) > 1} == {}  # one clip per recording
    assert merged == []
    assert by_rule == [("dedup.exact", "not-really.wav"),   # the same Ogg bytes under a .wav name
                       ("dedup.exact", "side-right.flac"),  # FLAC of a 16-bit WAV: the same samples
                       ("dedup.near", "bals-22k.wav"), ("dedup.near", "fdo_audio-channel-rear-right.oga"),
                       ("dedup.near", "klettres_lt_syllab_bals.ogg"),  # its AAC copy decodes 33 ms longer: kept
                       ("dedup.near", "question.opus"), ("dedup.near", "ru_ze-64k.mp3"),
                       ("dedup.near", "ru_ze.flac"),  # Vorbis floats rounded to 16 bits: near, not exact
                       ("dedup.near", "sit-quieter.flac"), ("dedup.near", "sit-trimmed.wav")]


def test_exported_clips_are_mono_flac_at_the_target_rate_and_load_in_datasets(audio_run):
    from datasets import Audio, load_dataset

    summary, out, _ = audio_run
    version = out / "versions" / "v1"
    files = sorted(str(p) for p in (version / "train").glob("*.parquet"))
    train = load_dataset("parquet", data_files=files, split="train")
    assert isinstance(train.features["audio"], Audio) and len(train) == summary["splits"]["train"]
    raw = train.cast_column("audio", Audio(decode=False))  # datasets >= 4 decodes with torchcodec (needs torch)
    for row in raw:
        samples, rate = sf.read(io.BytesIO(row["audio"]["bytes"]), dtype="float32", always_2d=True)
        assert (rate, samples.shape[1], row["sample_rate"]) == (24_000, 1, 24_000)
        assert abs(len(samples) / rate - row["duration_s"]) < 0.01
        assert row["log_mel_shape"][0] == 80 and len(row["log_mel"]) == 80 * row["log_mel_shape"][1]
    with tarfile.open(version / "train" / "part-00000.tar") as tar:
        assert tar.getnames()[:4] == ["000000.flac", "000000.txt", "000000.log_mel.npy", "000000.json"]
        spectrum = np.load(io.BytesIO(tar.extractfile("000000.log_mel.npy").read()))
        shape = json.load(tar.extractfile("000000.json"))["log_mel_shape"]
        assert spectrum.dtype == np.float16 and spectrum.reshape(shape).shape == (80, shape[1])
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["modality"] == "audio" and manifest["seconds"] == {"train": 157.27, "validation": 6.786, "test": 2.031}
    assert (manifest["source_formats"], manifest["source_rates"]) == ({"WAV": 2, "OGG": 39, "MP4": 1},
                                                                      {"48000": 9, "44100": 33})
    assert round(sum(manifest["seconds"].values()), 2) == round(sum(read(
        p for split in ("train", "validation", "test") for p in (version / split).glob("*.parquet"))["duration_s"]
        .to_pylist()), 2)
    report = (version / "report.html").read_text()
    assert report.count('src="data:image/png;base64,') >= 20  # waveform and spectrogram of kept and removed clips
