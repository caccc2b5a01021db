"""The audio modality's parts on small synthetic signals with known answers, and on the repository's clips."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from conftest import ROOT
from flows.config import ConfigError, load_config
from tasks.audio import AUDIO, AudioCollectSettings, AudioSource
from tasks.audio import signal
from tasks.audio.decode import Undecodable, decode, ogg_crc
from tasks.audio.dedup import AudioDedupSettings
from tasks.audio.export import AudioExportSettings, LogMelSettings, log_mel, mel_filters, prepare_export
from tasks.audio.fingerprint import RATE, bit_error_rate, signature
from tasks.audio.preprocess import AudioPreprocessSettings, preprocess
from tasks.collect import collect_unit, discover
from tasks.dedup.steps import dedup_tables
from tasks.io.layout import RunPaths
from tasks.io.storage import Store

CLIPS = ROOT / "examples" / "audio"  # real clips committed with the audio quickstart
SHARED_CLIPS = ROOT.parent / "shared" / "data" / "audio"


def tone(seconds: float, rate: int = 16_000, hz: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def noise(seconds: float, rate: int = 48_000, seed: int = 0, amplitude: float = 0.3) -> np.ndarray:
    return (amplitude * np.random.default_rng(seed).standard_normal(round(seconds * rate))).clip(-1, 1).astype(np.float32)


def encoded(samples: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = "PCM_16") -> bytes:
    out = io.BytesIO()
    sf.write(out, samples, rate, format=fmt, subtype=subtype)
    return out.getvalue()


def records(clips: dict[str, bytes], transcripts: dict[str, str] | None = None) -> pa.Table:
    rows = []
    for rid, data in clips.items():
        clip = decode(data)
        rows.append({"id": rid, "audio": {"bytes": data, "path": f"{rid}.wav"}, "sample_rate": clip.rate,
                     "channels": clip.samples.shape[1], "duration_s": round(clip.duration_s, 4), "format": clip.format,
                     "codec": clip.codec, "bytes_size": len(data), "transcript": (transcripts or {}).get(rid),
                     "speaker": None, "language": None, "source": "test", "source_index": 0, "meta": "{}"})
    return pa.Table.from_pylist(rows, schema=AUDIO.schema)


def test_decode_reads_the_format_from_the_bytes_and_names_what_is_wrong():
    wav = encoded(tone(3), 16_000)
    ogg = encoded(tone(3), 16_000, "OGG", "VORBIS")
    assert [(d.format, d.codec, d.rate, d.samples.shape) for d in map(decode, (wav, ogg))] == [
        ("WAV", "pcm_16", 16_000, (48_000, 1)), ("OGG", "vorbis", 16_000, (48_000, 1))]
    cases = {b"": "empty file (0 bytes)",
             wav[:44]: "WAV file with no audio samples (a header without data)",
             wav[:len(wav) // 2]: "truncated: the WAV header declares 3.00 s, 1.50 s decode",
             b"<html>404</html>": "not audio libsndfile or FFmpeg can decode (libsndfile: Format not recognised; "
                                  "FFmpeg: not opened: its first bytes match none of the containers curate reads with FFmpeg "
                                  "(MP4/M4A, MKV/WebM, ASF/WMA, MP3, AAC, AC3, Ogg, FLAC, WAV, AIFF, AMR, CAF)); "
                                  "16 bytes of text"}
    for data, error in cases.items():
        with pytest.raises(Undecodable) as caught:
            decode(data)
        assert str(caught.value) == error


def ogg_pages(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each page, read from the headers."""
    pages, at = [], 0
    while at < len(data):
        end = at + 27 + data[at + 26] + sum(data[at + 27:at + 27 + data[at + 26]])
        pages.append((at, end))
        at = end
    return pages


def without_end_of_stream(data: bytes) -> bytes:
    """The file as a streaming recorder writes it: the last page's end-of-stream flag unset, its CRC redone."""
    start, _ = ogg_pages(data)[-1]
    page = bytearray(data[start:])
    page[5] &= ~0x04
    page[22:26] = bytes(4)
    page[22:26] = ogg_crc(bytes(page)).to_bytes(4, "little")
    return data[:start] + bytes(page)


@pytest.mark.parametrize("name", ["wesnoth_silence.ogg", "question.opus", "yaru_bell.oga"])
def test_an_ogg_file_is_cut_when_it_ends_inside_a_page_or_its_last_page_fails_its_crc(name):
    data = (CLIPS / name).read_bytes()
    whole = decode(data)
    pages = ogg_pages(data)
    assert data[pages[-1][0] + 5] & 0x04 and len(pages) >= 4  # the file as shipped ends with an EOS page
    no_eos = decode(without_end_of_stream(data))  # libogg checks CRCs: a wrong one would lose the page
    # every sample is there; without EOS, Opus does not trim its last frame's padding (218 samples here) and
    # libsndfile's Opus decode differs by up to 2.6e-4 (-72 dBFS) in a few frames; Vorbis decodes the same
    assert 0 <= len(no_eos.samples) - len(whole.samples) < 0.01 * whole.rate
    tolerance = 1e-6 if whole.codec == "vorbis" else 1e-3
    assert np.allclose(no_eos.samples[:len(whole.samples)], whole.samples, atol=tolerance)
    at_page_end = decode(data[:pages[-2][1]])  # a valid shorter stream: nothing can tell it from a whole one
    assert 0 < len(at_page_end.samples) <= len(whole.samples)
    start, end = pages[-2]
    mid = start + (end - start) // 2
    with pytest.raises(Undecodable, match=rf"^truncated: the file ends inside Ogg page {len(pages) - 1} "
                                          rf"\({mid - start} of its {end - start} bytes\)"):
        decode(data[:mid])
    damaged = bytearray(data)
    damaged[-1] ^= 0xFF
    with pytest.raises(Undecodable, match=rf"^truncated: the CRC of the last Ogg page \(page {len(pages)}\) does not"):
        decode(bytes(damaged))


def test_a_cut_flac_is_found_by_its_streaminfo():
    data = (CLIPS / "ru_ze.flac").read_bytes()
    for cut in (len(data) // 3, len(data) - 100):
        with pytest.raises(Undecodable) as caught:
            decode(data[:cut])
        assert str(caught.value) == ("truncated: the FLAC stream breaks off before the 0.82 s its STREAMINFO "
                                     "declares (libsndfile: Error : flac decoder lost sync)")


def test_decode_falls_back_to_ffmpeg_for_aac():
    data = (CLIPS / "bals.m4a").read_bytes()
    clip = decode(data)
    assert (clip.format, clip.codec, clip.rate, clip.samples.shape[1]) == ("MP4", "aac", 44_100, 2)
    assert abs(clip.duration_s - 1.5) < 0.05


def test_signal_measures_on_known_signals():
    sine = tone(1.0)
    clipped = sine.copy()
    clipped[:30] = 1.0
    assert signal.clipping_share(sine) == 0.0 and signal.clipping_share(clipped) == 30 / 16_000
    half_silent = np.concatenate([np.zeros(8_000, np.float32), sine[:8_000]])
    assert signal.silence_share(half_silent, 16_000, -50) == 0.5  # 25 of 50 frames of 20 ms
    level, method = signal.loudness(tone(3, 48_000, 997, 1.0), 48_000)
    assert method == "lufs" and abs(level - -3.01) < 0.05  # BS.1770's calibration: a full-scale 997 Hz sine
    level, method = signal.loudness(tone(0.2, 48_000, 997, 0.5), 48_000)
    assert method == "rms_dbfs" and round(level, 2) == -9.03  # 20 log10(0.5 / sqrt 2)
    assert round(signal.normalise_gain(-13.0, 0.5, -23.0, -1.0, 20.0), 2) == -10.0
    assert round(signal.normalise_gain(-40.0, 0.5, -23.0, -1.0, 20.0), 2) == 5.02  # the peak limit wins
    assert round(signal.normalise_gain(-70.0, 0.001, -23.0, -1.0, 20.0), 2) == 20.0  # a quiet clip: at most +20 dB
    wide, narrow = noise(1.0), signal.resample(noise(1.0, 8_000), 8_000, 48_000)
    assert abs(signal.high_band_db(wide, 48_000, 7_200) - 10 * np.log10(16.8 / 24)) < 0.05  # white: 70% above 7.2 kHz
    assert signal.high_band_db(narrow, 48_000, 7_200) < -100 and signal.high_band_db(wide, 8_000, 7_200) == -200


def test_speech_fraction_comes_from_the_model_in_the_wheel():
    speech, rate = sf.read(CLIPS / "klettres_ru_alpha_ge.ogg", dtype="float32", always_2d=True)
    mono16k = signal.resample(speech.mean(axis=1), rate, 16_000)
    assert signal.speech_fraction(np.zeros(16_000, np.float32)) == 0.0
    assert round(signal.speech_fraction(mono16k), 3) == 0.792


def test_fingerprint_ignores_gain_and_resampling_and_tells_clips_apart():
    def sig(samples, rate):
        return np.frombuffer(signature(signal.resample(samples, rate, RATE)), np.uint8)[None]

    clips = {}
    for name in ("klettres_ru_alpha_ge.ogg", "klettres_ru_alpha_ze.ogg"):
        samples, rate = sf.read(CLIPS / name, dtype="float32")
        clips[name] = (samples.mean(axis=1), rate)
    ge, rate = clips["klettres_ru_alpha_ge.ogg"]
    original = sig(ge, rate)
    assert bit_error_rate(original, sig(ge * 0.25, rate), 4, 16)[0] == 0.0
    assert bit_error_rate(original, sig(signal.resample(ge, rate, 22_050), 22_050), 4, 16)[0] < 0.02
    other = sig(*clips["klettres_ru_alpha_ze.ogg"])  # another letter, the same speaker
    assert bit_error_rate(original, other, 4, 16)[0] > 0.3
    assert bit_error_rate(original, other, AudioDedupSettings().max_shift_frames, 16)[0] > 0.3


def test_rules_reject_with_the_measured_value():
    rate = 48_000
    clipped = noise(1.0, rate, seed=1)
    clipped[: rate // 10] = 1.0
    clips = {"good": encoded(noise(1.0, rate, seed=2), rate),
             "short": encoded(noise(0.3, rate), rate),
             "silent": encoded(np.concatenate([noise(0.05, rate), np.zeros(rate, np.float32)]), rate),
             "clipped": encoded(clipped, rate),
             "narrow": encoded(signal.resample(noise(1.0, 8_000, seed=3, amplitude=0.2), 8_000, rate), rate)}
    kept, rejected = preprocess(records(clips), AudioPreprocessSettings(content="speech", speech={"enabled": False}))
    assert kept["id"].to_pylist() == ["good"]
    reasons = dict(zip(rejected["id"].to_pylist(), rejected["reason"].to_pylist()))
    assert reasons["short"] == "audio.min_duration: 0.3 < 0.5 s"
    assert reasons["silent"] == "audio.silence: 0.943 > 0.9"  # 50 of 53 frames of 20 ms: the noise touches 3
    assert reasons["clipped"] == "audio.clipping: 0.101 > 0.01"  # the 10% forced to 1, and the noise's own peaks
    assert reasons["narrow"].startswith("audio.narrowband: -8")  # 16-bit rounding noise is all there is above 7.2 kHz
    assert reasons["narrow"].endswith(" < -80 dB of the energy above 7200 Hz (a speech-bandwidth test; content: speech)")
    row = kept.to_pylist()[0]
    samples, out_rate = sf.read(io.BytesIO(row["audio"]["bytes"]))
    assert (out_rate, row["sample_rate"], row["original_sample_rate"], row["format"], row["source_format"]) == (
        24_000, 24_000, 48_000, "FLAC", "WAV")
    assert len(samples) == 24_000 and row["audio"]["path"] == "good.flac"
    level, _ = signal.loudness(samples.astype(np.float32), 24_000)
    assert abs(level - -23.0) < 0.1  # normalised to the target


@pytest.mark.skipif(not SHARED_CLIPS.is_dir(), reason="needs the shared sample clips")
def test_narrowband_judges_speech_only_unless_content_is_speech():
    """Real sound effects recorded at 16 kHz have no energy above 7.2 kHz by nature: with content: any they
    are kept; real speech band-limited as a telephone line does it (8 kHz) is rejected."""
    speech, rate = sf.read(CLIPS / "klettres_ru_alpha_ge.ogg", dtype="float32")
    telephone = signal.resample(signal.resample(speech.mean(axis=1), rate, 8_000), 8_000, rate)
    clips = {"telephone": encoded(telephone, rate),
             "percussion": (SHARED_CLIPS / "soundicons_percussion-28.wav").read_bytes(),
             "pisk": (SHARED_CLIPS / "soundicons_pisk-up.wav").read_bytes()}
    short_ok = {"duration": {"min_s": 0.1}}  # the effects last 0.26 s
    kept, rejected = preprocess(records(clips), AudioPreprocessSettings(**short_ok))
    assert kept["id"].to_pylist() == ["percussion", "pisk"]
    assert [round(v) for v in kept["high_band_db"].to_pylist()] == [-85, -85]
    assert kept["speech_fraction"].to_pylist() == [0.0, 0.0]
    assert rejected["id"].to_pylist() == ["telephone"]
    assert rejected["reason"].to_pylist() == [
        "audio.narrowband: -91 < -80 dB of the energy above 7200 Hz (a speech-bandwidth test; speech fraction >= 0.5)"]
    assert rejected["speech_fraction"][0].as_py() >= 0.5
    kept, rejected = preprocess(records(clips), AudioPreprocessSettings(**short_ok, speech={"min_fraction": 0.0},
                                                                        content="speech"))
    assert kept.num_rows == 0 and rejected["rule"].to_pylist() == ["audio.narrowband"] * 3


def test_speech_content_filters_on_the_vad_and_transcripts_on_their_rate():
    speech = (CLIPS / "klettres_ru_alpha_ge.ogg").read_bytes()
    music = encoded(noise(2.0, 48_000, seed=4), 48_000)
    table = records({"speech": speech, "noise": music, "fast": speech},
                    {"speech": "ge", "fast": "x" * 40})  # 40 characters in 0.755 s: 53 per second
    kept, rejected = preprocess(table, AudioPreprocessSettings(content="speech"))
    assert kept["id"].to_pylist() == ["speech"]
    assert sorted(zip(rejected["id"].to_pylist(), rejected["reason"].to_pylist())) == [
        ("fast", "transcript.max_chars_per_s: 53 > 30 chars/s"), ("noise", "audio.speech: 0 < 0.2")]


def test_speech_is_measured_where_a_rule_or_a_ranking_reads_it(tmp_path):
    """The wideband clip needs no VAD under content: any (its narrowband test passes); measure: always, or a
    dedup that keeps the clip of most speech, measures every clip."""
    table = records({"speech": (CLIPS / "klettres_ru_alpha_ge.ogg").read_bytes()})
    kept, _ = preprocess(table, AudioPreprocessSettings())
    assert kept["speech_fraction"].to_pylist() == [None] and kept["high_band_db"][0].as_py() > -80
    kept, _ = preprocess(table, AudioPreprocessSettings(speech={"measure": "always"}))
    assert [round(v, 3) for v in kept["speech_fraction"].to_pylist()] == [0.792]
    path = tmp_path / "c.yaml"
    path.write_text("modality: audio\nsources: [{uri: 'a/*'}]\noutput: out\n")
    assert load_config(path).preprocess.speech.measure == "needed"
    path.write_text("modality: audio\nsources: [{uri: 'a/*'}]\noutput: out\ndedup: {keep: quality}\n")
    assert load_config(path).preprocess.speech.measure == "always"


def test_audio_dedup_matches_pcm_exactly_and_transcodes_nearly_and_keeps_the_largest():
    wav = (CLIPS / "alsa_Side_Right.wav").read_bytes()
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    table = records({"original": wav, "flac": encoded(samples, rate, "FLAC"),
                     "quieter": encoded(samples * 0.5, rate), "resampled": encoded(signal.resample(samples, rate, 16_000), 16_000),
                     "other": (CLIPS / "klettres_hu_alpha_c.ogg").read_bytes()})
    kept, _ = preprocess(table, AudioPreprocessSettings())
    assert kept.num_rows == 5
    ((survivors, removed, _),), _, stats = dedup_tables([kept], AudioDedupSettings())
    assert sorted(survivors["id"].to_pylist()) == ["original", "other"] and stats["cluster_sizes"] == {4: 1}
    assert sorted(zip(removed["id"].to_pylist(), removed["rule"].to_pylist(), removed["duplicate_of"].to_pylist())) == [
        ("flac", "dedup.exact", "original"), ("quieter", "dedup.near", "original"),
        ("resampled", "dedup.near", "original")]


def test_copies_trimmed_at_the_start_are_found_wherever_their_loudest_moment_went():
    """A 1.56 s word trimmed by 0.1 s, 0.5 s and 30%: the longer trims cut its loudest moment away, so the
    copies' windows sit elsewhere on the sound than the original's. Two letters said by one speaker stay."""
    ein = (CLIPS / "klettres_de_syllab_ein.ogg").read_bytes()
    samples, rate = sf.read(io.BytesIO(ein), dtype="float32", always_2d=True)
    trims = {"trim-0.1s": rate // 10, "trim-0.5s": rate // 2, "trim-30%": round(0.3 * len(samples))}
    clips = {"ein": ein, **{name: encoded(samples[cut:], rate) for name, cut in trims.items()},
             "ge": (CLIPS / "klettres_ru_alpha_ge.ogg").read_bytes(), "ze": (CLIPS / "klettres_ru_alpha_ze.ogg").read_bytes()}
    kept, _ = preprocess(records(clips), AudioPreprocessSettings())
    ((survivors, removed, _),), _, _ = dedup_tables([kept], AudioDedupSettings())
    assert sorted(survivors["id"].to_pylist()) == ["ein", "ge", "ze"]
    assert sorted(zip(removed["id"].to_pylist(), removed["rule"].to_pylist(), removed["duplicate_of"].to_pylist())) == [
        ("trim-0.1s", "dedup.near", "ein"), ("trim-0.5s", "dedup.near", "ein"), ("trim-30%", "dedup.near", "ein")]


def test_a_later_run_drops_copies_of_published_clips():
    ge = (CLIPS / "klettres_ru_alpha_ge.ogg").read_bytes()
    samples, rate = sf.read(io.BytesIO(ge), dtype="float32", always_2d=True)
    first, _ = preprocess(records({"ge": ge, "c": (CLIPS / "klettres_hu_alpha_c.ogg").read_bytes()}),
                          AudioPreprocessSettings())
    _, published, _ = dedup_tables([first], AudioDedupSettings())
    later, _ = preprocess(records({"ge-22k": encoded(signal.resample(samples, rate, 22_050), 22_050),
                                   "sit": (CLIPS / "klettres_en_syllab_sit.ogg").read_bytes()}), AudioPreprocessSettings())
    ((kept, removed, _),), _, _ = dedup_tables([later], AudioDedupSettings(), published=published)
    assert kept["id"].to_pylist() == ["sit"]
    assert list(zip(removed["id"].to_pylist(), removed["duplicate_of"].to_pylist())) == [("ge-22k", "ge")]


def test_log_mel_has_the_configured_shape_and_mel_filters_cover_the_band():
    settings = LogMelSettings(enabled=True)
    spectrum = log_mel(tone(1.0, 24_000, 1_000), 24_000, settings)
    assert spectrum.shape == (80, 1 + 24_000 // 256)
    filters = mel_filters(24_000, 1024, 80, 0.0, 12_000.0)
    assert filters.shape == (80, 513) and (filters.sum(axis=1) > 0).all()
    assert int(np.argmax(spectrum[:, 40])) == int(np.argmax(filters[:, round(1_000 * 1024 / 24_000)]))
    table = records({"a": encoded(tone(1.0, 24_000), 24_000, "FLAC")}).append_column("split", pa.array(["train"]))
    out = prepare_export(table, AudioExportSettings(log_mel=settings)).to_pylist()[0]
    assert out["log_mel_shape"] == [80, 94] and len(out["log_mel"]) == 80 * 94


def test_collect_reads_clips_named_by_a_table_with_transcripts(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "one.flac").write_bytes(encoded(tone(1.0), 16_000, "FLAC"))
    (tmp_path / "pairs.jsonl").write_text(
        '{"file": "clips/one.flac", "text": "hello", "who": "spk1", "lang": "en", "license": "cc0"}\n'
        '{"file": "clips/missing.wav", "text": "gone"}\n{"file": "clips/one.flac", "text": 7}\n')
    sources = [AudioSource(uri=str(tmp_path / "pairs.jsonl"), audio_field="file", transcript_field="text",
                           speaker_field="who", language_field="lang")]
    result = collect_unit(discover(sources, AUDIO), sources, AudioCollectSettings(), AUDIO,
                          Store(str(tmp_path / "out")), RunPaths("r"), 0)
    assert result.counts.as_dict() == {"in": 3, "kept": 1, "rejected": {}, "quarantined": 2}
    row = pq.read_table(tmp_path / "out/runs/r/collect" / result.shards[0]["name"]).to_pylist()[0]
    assert (row["sample_rate"], row["duration_s"], row["format"], row["transcript"], row["speaker"], row["language"],
            json.loads(row["meta"])) == (16_000, 1.0, "FLAC", "hello", "spk1", "en", {"license": "cc0"})
    bad = pq.read_table(tmp_path / "out/runs/r/collect/_quarantine/part-00000.parquet").to_pylist()
    assert [(b["line"], b["error"].split(":")[0]) for b in bad] == [
        (2, "cannot read audio file clips/missing.wav"), (3, "field 'text' is int, expected a string")]


def test_config_sections_follow_the_audio_modality(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("modality: audio\nsources: [{uri: 'a/*'}]\noutput: out\npreprocess: {min_side: {min_side: 3}}\n")
    with pytest.raises(ConfigError, match="preprocess.min_side: unknown key"):
        load_config(path)
    path.write_text("modality: audio\nsources: [{uri: 'a/*', transcript_field: text}]\noutput: out\n"
                    "preprocess: {target_rate: 16000, content: speech}\n")
    config = load_config(path)
    assert (config.preprocess.target_rate, config.preprocess.content, config.sources[0].transcript_field) == (
        16_000, "speech", "text")


def test_examples_hold_the_clips_the_quickstart_names():
    assert len(list(CLIPS.iterdir())) == 33 and Path(CLIPS / "not-really.wav").read_bytes()[:4] == b"OggS"
