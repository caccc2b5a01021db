"""The image modality: picture files (any name: the bytes tell the format) or tables naming pictures by
path or URL, with optional captions, become records carrying the bytes (`image` as struct{bytes, path});
preprocess normalises and filters them (`preprocess`), dedup matches pixels exactly and pHash bands
nearly (`dedup`), export resizes and re-encodes them (`export`); `stats` feeds manifest, card and report.
"""

from __future__ import annotations

import posixpath

import pyarrow as pa
from pydantic import Field

from tasks.collect import WHOLE_FILE, CollectSettings, Malformed, Source
from tasks.image import stats
from tasks.image.decode import Undecodable, probe
from tasks.image.dedup import ImageDedupSettings
from tasks.image.export import ImageExportSettings, prepare_export
from tasks.image.preprocess import ImagePreprocessSettings, preprocess
from tasks.modality import Modality
from tasks.records import BASE_FIELDS, MEDIA_TYPE
from tasks.storage import filesystem

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


class ImageSource(Source):
    image_field: str = Field("image", description="table sources: field holding the picture's path or URL "
                                                  "(relative to the table's folder) or its bytes")
    caption_field: str | None = Field(None, description="table sources: field holding the caption")

    def payload_fields(self) -> list[str]:
        return [self.image_field] + ([self.caption_field] if self.caption_field else [])


class ImageCollectSettings(CollectSettings):
    shard_rows: int = Field(2_000, ge=1, description="maximum pictures per shard")
    shard_bytes: int = Field(128 * 2**20, ge=1024, description="maximum picture bytes per shard")
    max_pixels: int = Field(89_478_485, ge=1, description="pictures with more pixels are quarantined, undecoded "
                                                         "(decompression bombs); Pillow's own default")
    row_group: int = Field(100, ge=1, description="rows per Parquet row group")

    @property
    def row_group_rows(self) -> int | None:
        return self.row_group


def read_reference(ref: str, table_url: str, source: ImageSource) -> bytes:
    """The bytes of a picture a table names, relative to the table's own folder unless absolute."""
    url = ref if "://" in ref or ref.startswith("/") else posixpath.join(posixpath.dirname(table_url), ref)
    fs, path = filesystem(url, source.storage_options)
    with fs.open(path, "rb") as f:
        return f.read()


def to_payload(obj: dict, source: ImageSource, url: str, settings: ImageCollectSettings):
    """The picture of a whole file or of a table row, with what Pillow reads of it once fully decoded."""
    if WHOLE_FILE in obj:
        value, where = obj[WHOLE_FILE]["bytes"], url
    elif source.image_field not in obj or obj[source.image_field] in (None, ""):
        return Malformed(f"missing image field '{source.image_field}' (fields: {', '.join(sorted(obj)) or 'none'})")
    else:
        value, where = obj[source.image_field], url
    if isinstance(value, dict):
        value, where = value.get("bytes") or value.get("path"), value.get("path") or url
    if isinstance(value, str):
        where = value
        try:
            value = read_reference(value, url, source)
        except (OSError, ValueError) as e:
            return Malformed(f"cannot read picture {value}: {type(e).__name__}: {e}", value)
    if not isinstance(value, (bytes, bytearray)):
        return Malformed(f"image field '{source.image_field}' is {type(value).__name__}, expected a path, URL or bytes")
    caption = obj.get(source.caption_field) if source.caption_field else None
    if caption is not None and not isinstance(caption, str):
        return Malformed(f"caption field '{source.caption_field}' is {type(caption).__name__}, expected a string")
    try:
        info = probe(bytes(value), settings.max_pixels)
    except Undecodable as e:
        return Malformed(str(e), where)
    return {"image": {"bytes": bytes(value), "path": where}, **info, "bytes_size": len(value), "caption": caption}, len(value)


IMAGE = Modality(
    name="image", noun="images", schema=SCHEMA, features=FEATURES, text_column="caption",
    source=ImageSource, collect=ImageCollectSettings,
    preprocess=ImagePreprocessSettings, dedup=ImageDedupSettings, export=ImageExportSettings,
    file_format="image", file_extensions=None, to_payload=to_payload, preprocess_shard=preprocess,
    prepare_export=prepare_export, stats=stats.of_table, charts=stats.charts, card=stats.card, example=stats.example,
)
