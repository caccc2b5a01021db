"""Seconds of audio per second per core on the shared real clips: decode alone (the limit) against the
whole per-shard audio work of preprocess (rules, one decode, measurements, VAD, resampling, loudness,
FLAC encoding, fingerprint) plus the dedup sketch. One process, no orchestrator, so the figures are per core.

    .venv/bin/python bench/audio_throughput.py [ROUNDS] [--profile]
"""

from __future__ import annotations

import sys

from media import SHARED, profile, records, timed

from tasks.audio import AUDIO, fingerprint, signal
from tasks.audio.decode import decode
from tasks.audio.dedup import AudioDedupSettings
from tasks.audio.preprocess import AudioPreprocessSettings, flac, pcm_hash, preprocess
from tasks.dedup import sketch_shard

CLIPS = SHARED / "audio"


def main(rounds: int) -> None:
    table = records(AUDIO, CLIPS)
    n, seconds = table.num_rows, sum(table["duration_s"].to_pylist())
    blobs = [clip["bytes"] for clip in table["audio"].to_pylist()]
    # every measurement on every clip: no rule drops a row before the decode
    settings = AudioPreprocessSettings(duration={"enabled": False})
    dedup = AudioDedupSettings()

    def decode_only():
        for data in blobs:
            decode(data)

    def preprocess_and_sketch():
        kept, _ = preprocess(table, settings)
        sketch_shard(kept, dedup)

    print(f"{n} clips, {seconds:.1f} s of audio, {sum(map(len, blobs)) / 1e6:.1f} MB; {rounds} rounds, one core")
    whole_decode = timed(decode_only, rounds)
    whole = timed(preprocess_and_sketch, rounds)
    print(f"{'decode alone':<28}{whole_decode:8.2f} s{seconds / whole_decode:10.0f} s of audio/s{n / whole_decode:8.1f} clips/s")
    print(f"{'preprocess + dedup sketch':<28}{whole:8.2f} s{seconds / whole:10.0f} s of audio/s{n / whole:8.1f} clips/s")
    print(f"ratio (whole / decode time): {whole / whole_decode:.2f}")
    if "--profile" in sys.argv:
        profile(preprocess_and_sketch, rounds, [
            decode, signal.mono_mix, signal.resample, signal.loudness, signal.high_band_db, signal.speech_fraction,
            signal.silence_share, signal.clipping_share, flac, pcm_hash,
            fingerprint.signature, AudioDedupSettings.sketch])


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 3)
