"""The image modality: picture files (any name: the bytes tell the format) or tables naming pictures by
path or URL, with optional captions, become records carrying the bytes (`image` as struct{bytes, path});
preprocess normalises and filters them (`preprocess`), dedup matches pixels exactly and pHash bands
nearly (`dedup`), export resizes and re-encodes them (`export`); `stats` feeds manifest, card and report.
"""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field

from tasks.collect import MediaCollectSettings, MediaSource
from tasks.io.readers import Malformed, media_bytes, optional_text
from tasks.image import stats
from tasks.image.decode import Undecodable, probe
from tasks.image.dedup import ImageDedupSettings
from tasks.image.export import ImageExportSettings, prepare_export
from tasks.image.preprocess import ImagePreprocessSettings, preprocess
from tasks.modality import Modality
from tasks.records import BASE_FIELDS, MEDIA_TYPE

SCHEMA = pa.schema([
    BASE_FIELDS[0],
    pa.field("image", MEDIA_TYPE),
    pa.field("width", pa.int32()), pa.field("height", pa.int32()),
    pa.field("format", pa.string()), pa.field("mode", pa.string()), pa.field("has_alpha", pa.bool_()),
    pa.field("bytes_size", pa.int64()),
    pa.field("caption", pa.string()),
    *BASE_FIELDS[1:],
])
# how `datasets` learns that `image` is an Image feature (and decodes it to a PIL image) from Parquet alone
FEATURES = {"image": {"_type": "Image"}}


class ImageSource(MediaSource):
    image_field: str = Field("image", description="table sources: field holding the picture's path or URL "
                                                  "(relative to the table's folder) or its bytes")
    caption_field: str | None = Field(None, description="table sources: field holding the caption")

    def payload_fields(self) -> list[str]:
        return [self.image_field] + ([self.caption_field] if self.caption_field else [])


class ImageCollectSettings(MediaCollectSettings):
    max_pixels: int = Field(89_478_485, ge=1, description="pictures with more pixels are quarantined, undecoded "
                                                         "(decompression bombs); Pillow's own default")


def to_payload(obj: dict, source: ImageSource, url: str, settings: ImageCollectSettings):
    """The picture of a whole file or of a table row, with what Pillow reads of it once fully decoded."""
    media = media_bytes(obj, source.image_field, url, source, settings.limits, "picture")
    caption = optional_text(obj, source.caption_field)
    for bad in (media, caption):
        if isinstance(bad, Malformed):
            return bad
    value, where = media
    try:
        info = probe(value, settings.max_pixels)
    except Undecodable as e:
        return Malformed(str(e), where)
    return {"image": {"bytes": value, "path": where}, **info, "bytes_size": len(value), "caption": caption}, len(value)


IMAGE = Modality(
    name="image", noun="images", schema=SCHEMA, features=FEATURES, text_column="caption",
    source=ImageSource, collect=ImageCollectSettings,
    preprocess=ImagePreprocessSettings, dedup=ImageDedupSettings, export=ImageExportSettings,
    file_format="image", file_extensions=None, to_payload=to_payload, preprocess_shard=preprocess,
    prepare_export=prepare_export, stats=stats.of_table, charts=stats.charts, card=stats.card, example=stats.example,
)
