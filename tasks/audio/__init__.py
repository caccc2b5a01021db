"""The audio modality: audio files (any name: the bytes tell the format) or tables naming them by path or
URL, with optional transcript, speaker and language (paired data for TTS and ASR), become records carrying
the bytes (`audio` as struct{bytes, path}); collect decodes each in full and quarantines what does not
decode or is cut (`decode`); preprocess measures, converts and filters (`preprocess`); dedup matches PCM
exactly and fingerprints nearly (`dedup`); export writes FLAC with optional log-mel spectrograms
(`export`); `stats` feeds manifest, card and report.
"""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field

from tasks.audio import stats
from tasks.audio.decode import MAX_SAMPLES, Undecodable, decode
from tasks.audio.dedup import AudioDedupSettings
from tasks.audio.export import AudioExportSettings, prepare_export
from tasks.audio.preprocess import AudioPreprocessSettings, preprocess
from tasks.collect import MediaCollectSettings, MediaSource
from tasks.io.readers import Malformed, media_bytes, optional_text
from tasks.modality import Modality
from tasks.records import BASE_FIELDS, MEDIA_TYPE

SCHEMA = pa.schema([
    BASE_FIELDS[0],
    pa.field("audio", MEDIA_TYPE),
    pa.field("sample_rate", pa.int32()), pa.field("channels", pa.int32()), pa.field("duration_s", pa.float64()),
    pa.field("format", pa.string()), pa.field("codec", pa.string()), pa.field("bytes_size", pa.int64()),
    pa.field("transcript", pa.string()), pa.field("speaker", pa.string()), pa.field("language", pa.string()),
    *BASE_FIELDS[1:],
])
# how `datasets` learns that `audio` is an Audio feature (and decodes it to an array) from Parquet alone
FEATURES = {"audio": {"_type": "Audio"}}


class AudioSource(MediaSource):
    audio_field: str = Field("audio", description="table sources: field holding the clip's path or URL "
                                                  "(relative to the table's folder) or its bytes")
    transcript_field: str | None = Field(None, description="table sources: field holding the transcript or caption")
    speaker_field: str | None = Field(None, description="table sources: field holding the speaker")
    language_field: str | None = Field(None, description="table sources: field holding the language")

    def text_fields(self) -> dict[str, str | None]:
        return {"transcript": self.transcript_field, "speaker": self.speaker_field, "language": self.language_field}

    def payload_fields(self) -> list[str]:
        return [self.audio_field] + [f for f in self.text_fields().values() if f]


class AudioCollectSettings(MediaCollectSettings):
    """Clips are collected with the media defaults, each decoded once in full within a sample budget."""
    max_samples: int = Field(MAX_SAMPLES, ge=1, description=(
        "channels x frames one clip may decode to (default: an hour of 48 kHz stereo); a clip whose header "
        "declares more is quarantined before decoding, one that decodes past it when it is reached"))


def to_payload(obj: dict, source: AudioSource, url: str, settings: AudioCollectSettings):
    """The clip of a whole file or of a table row, with what its full decode says of it."""
    media = media_bytes(obj, source.audio_field, url, source, settings.limits, "audio file")
    texts = {name: optional_text(obj, field) for name, field in source.text_fields().items()}
    for bad in (media, *texts.values()):
        if isinstance(bad, Malformed):
            return bad
    value, where = media
    try:
        clip = decode(value, settings.max_samples)
    except Undecodable as e:
        return Malformed(str(e), where)
    return {"audio": {"bytes": value, "path": where}, "sample_rate": clip.rate, "channels": clip.samples.shape[1],
            "duration_s": round(clip.duration_s, 4), "format": clip.format, "codec": clip.codec,
            "bytes_size": len(value), **texts}, len(value)


AUDIO = Modality(
    name="audio", noun="clips", schema=SCHEMA, features=FEATURES, text_column="transcript",
    source=AudioSource, collect=AudioCollectSettings,
    preprocess=AudioPreprocessSettings, dedup=AudioDedupSettings, export=AudioExportSettings,
    file_format="audio", file_extensions=None, to_payload=to_payload, preprocess_shard=preprocess,
    prepare_export=prepare_export, stats=stats.of_table, charts=stats.charts, card=stats.card, example=stats.example,
)
