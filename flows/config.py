"""The pipeline configuration: one pydantic model for the YAML file, the CLI and the Prefect UI form.

Each stage owns its settings model (next to the code that reads it); this module composes them. Unknown
keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Mapping, Union

import yaml
from pydantic import Field, ValidationError, model_validator

from tasks import modalities
from tasks.export.balance import BalanceSettings
from tasks.gates import DataDocs, GatePolicy
from tasks.io import secrets
from tasks.records import Settings


class GateSettings(Settings):
    raw: GatePolicy = Field("fail", description="fail: stop before the next stage; warn: record and go on; off")
    clean: GatePolicy = Field("fail", description="the gate after preprocess: fail, warn or off")
    dedup: GatePolicy = Field("fail", description="the gate after dedup: fail, warn or off")
    export: GatePolicy = Field("fail", description="the gate on the exported shards: fail, warn or off")
    suites_dir: str | None = Field(None, description="folder of GX suite JSON files; default: the project's expectations/")
    data_docs: DataDocs = Field("failed", description="GX Data Docs pages: of shards that fail an expectation "
                                                       "(failed), of every shard (always) or never")


class DaskSettings(Settings):
    address: str | None = Field(None, description="existing scheduler (tcp://host:8786); null starts a local cluster")
    n_workers: int = Field(2, ge=1, description="local cluster: worker processes")
    threads_per_worker: int = Field(1, ge=1, description="local cluster: threads per worker process")
    memory_limit: str = Field("4GiB", description="local cluster: memory per worker")

    def scheduler(self, environ: Mapping[str, str]) -> str | None:
        """Where a run's tasks go: this scheduler, else DASK_SCHEDULER_ADDRESS (docker-compose.yml sets it for
        deployed runs); None: a local cluster of this size."""
        return self.address or environ.get("DASK_SCHEDULER_ADDRESS") or None


def _either(section: str):
    """The union of every modality's model of a config section: the UI form offers each."""
    return Union[tuple(getattr(m, section) for m in modalities.MODALITIES.values())]


TEXT = modalities.get("text")
SECTIONS = ("collect", "preprocess", "dedup", "export")


class PipelineConfig(Settings):
    modality: Literal[modalities.NAMES] = Field(
        "text", description="what the run curates; the sources, collect, preprocess, dedup and export sections "
                            "take that modality's settings")
    sources: list[_either("source")] = Field(min_length=1, description="where the raw data is")
    output: str = Field(description="output root: a local path or fsspec URL such as s3://bucket/datasets/name")
    storage_options: dict[str, Any] = Field(default_factory=dict, description=(
        "fsspec options for the output; credentials as references only: key: {env: VAR} or "
        "secret: {secret: prefect-secret-block-name}"))
    incremental: bool = Field(False, description=(
        "recurring ingest: take only source files no published version took (the ledger), dedup them against "
        "every published version, and publish a version that adds them to the latest one"))
    allow_empty: bool = Field(False, description=(
        "publish even when a source yields only quarantined records or nothing is left to publish; otherwise "
        "such a run fails and says which source and why (a field name typo, say)"))
    collect: _either("collect") = Field(TEXT.collect(), description="how source files become shards, and the caps "
                                                                    "on what one file may make collect read")
    preprocess: _either("preprocess") = Field(TEXT.preprocess(), description="the modality's rules, in order")
    dedup: _either("dedup") = Field(TEXT.dedup(), description="exact and near-duplicate removal, across versions "
                                                              "with incremental or against_published")
    export: _either("export") = Field(TEXT.export(), description="splits, shard sizes, name and version")
    balance: BalanceSettings = Field(BalanceSettings(), description=(
        "groups to report at every stage (by) and caps on the groups of one column (max_share, max_per_group)"))
    gates: GateSettings = Field(GateSettings(), description="Great Expectations gates between the stages")
    dask: DaskSettings = Field(DaskSettings(), description="where the tasks run: a local cluster or a scheduler")

    @model_validator(mode="before")
    @classmethod
    def _sections_of_the_modality(cls, data: Any) -> Any:
        """Validate each modality-specific section with the modality's own model (defaults included), so a
        key of another modality is an error and never picks another model of the union."""
        if not isinstance(data, dict) or data.get("modality", "text") not in modalities.NAMES:
            return data
        modality = modalities.get(data.get("modality", "text"))
        data, errors = dict(data), []
        for section in SECTIONS:
            value = data.get(section, {})
            data[section], bad = _validate(getattr(modality, section), value, (section,))
            errors += bad
        if isinstance(data.get("sources"), list):
            checked = [_validate(modality.source, s, ("sources", i)) for i, s in enumerate(data["sources"])]
            data["sources"] = [value for value, _ in checked]
            errors += [e for _, bad in checked for e in bad]
        if errors:  # report the other keys' errors too: validate the rest without the failed sections
            failed = {e["loc"][0] for e in errors}
            try:
                cls.model_validate({k: v for k, v in data.items() if k not in failed})
            except ValidationError as e:
                errors += [_relocated(err, ()) for err in e.errors() if err["loc"][0] not in failed]
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data

    @model_validator(mode="after")
    def _speech_measured_where_ranked(self) -> PipelineConfig:
        """Audio measures speech_fraction only where a preprocess rule needs it; when dedup or balance rank clips
        by it, every clip needs it."""
        speech = getattr(self.preprocess, "speech", None)
        ranked = {self.dedup.quality_column if self.dedup.keep == "quality" else None,
                  self.balance.quality}
        if speech is not None and speech.measure == "needed" and "speech_fraction" in ranked:
            self.preprocess = self.preprocess.model_copy(
                update={"speech": speech.model_copy(update={"measure": "always"})})
        return self

    @model_validator(mode="after")
    def _no_settings_for_a_feature_left_off(self) -> PipelineConfig:
        """A feature off by default configured without turning it on would do nothing and say nothing (a quality
        classifier's `train` that trains nothing, a `keep_top` that keeps everything): an error, unless
        `enabled: false` is written out, which says the settings wait on purpose."""
        problems = [f"{where}: {', '.join(given)} given, but the feature is off (enabled is false by default): add "
                    "enabled: true, or enabled: false to keep them unused" for where, given in left_off(self)]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def redacted(self) -> dict:
        """The config as JSON data with credentials masked: what goes into logs, artifacts and manifests."""
        return secrets.masked(self.model_dump(mode="json"))

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.redacted(), sort_keys=True).encode()).hexdigest()


def left_off(model: Settings, where: str = "") -> list[tuple[str, list[str]]]:
    """(dotted key, the settings given) of every section under `model` that is off by default, was not turned on
    and was given settings."""
    found, fields = [], type(model).model_fields
    if "enabled" in fields and fields["enabled"].default is False and not model.enabled \
            and "enabled" not in model.model_fields_set and model.model_fields_set:
        found.append((where, sorted(model.model_fields_set)))
    for name in fields:
        value = getattr(model, name)
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(item, Settings):
                found += left_off(item, f"{where}.{name}".lstrip(".") + (f"[{i}]" if isinstance(value, list) else ""))
    return found


def _validate(model: type, value: Any, loc: tuple) -> tuple[Any, list[dict]]:
    """(validated model or the value as it was, errors located under `loc`)."""
    if type(value) is model:
        return value, []
    if isinstance(value, Settings):
        value = value.model_dump(exclude_unset=True)
    try:
        return model.model_validate(value), []
    except ValidationError as e:
        return value, [_relocated(err, loc) for err in e.errors()]


def _relocated(err: dict, loc: tuple) -> dict:
    """A pydantic error as line-error data, its location under `loc`."""
    return {"type": err["type"], "loc": (*loc, *err["loc"]), "input": err["input"],
            **({"ctx": err["ctx"]} if "ctx" in err else {})}


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and each bad key."""


def describe_errors(err: ValidationError, origin: str) -> str:
    lines = [f"invalid config {origin}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {key}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def _resolve_local(uri: Any, base: Path) -> Any:
    if not isinstance(uri, str) or "://" in uri or Path(uri).is_absolute():
        return uri
    return str(base / uri)


def _resolve_local_paths(data: dict, base: Path) -> None:
    """Relative local paths in a config file are relative to that file, wherever `curate` runs from."""
    for source in data.get("sources") or []:
        if isinstance(source, dict) and "uri" in source:
            source["uri"] = _resolve_local(source["uri"], base)
    if "output" in data:
        data["output"] = _resolve_local(data["output"], base)
    gates = data.get("gates")
    if isinstance(gates, dict) and gates.get("suites_dir"):
        gates["suites_dir"] = _resolve_local(gates["suites_dir"], base)


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error: YAML would keep the last one
    without a word, and the first (the one a reader sees) would not apply."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1}; YAML would keep only the last)",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read a YAML config; `overrides` maps dotted keys (e.g. "dask.address") to values that replace it.

    Relative local paths in the file are taken relative to the file; those in overrides (given on the
    command line) relative to the current directory.
    """
    path = Path(path)
    try:
        with path.open() as f:
            data = yaml.load(f, Loader=UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of keys, not {type(data).__name__}")
    _resolve_local_paths(data, path.resolve().parent)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = _resolve_local(value, Path.cwd()) if dotted == "output" else value
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe_errors(e, str(path))) from None
