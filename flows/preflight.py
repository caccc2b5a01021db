"""What a run needs before it starts, checked in seconds: every source matches files, the output takes
writes (its bucket exists: none is ever created), the gates' suites, the tokenizer, the quality model and
semantic dedup's model are there and any named credential resolves. `curate check` prints every problem; a
run stops on the first, before any work."""

from __future__ import annotations

from flows.config import PipelineConfig
from tasks import collect, gates, modalities
from tasks.io import secrets
from tasks.io.storage import OutputUnusable, Store
from tasks.text import fasttext_vectors, tokens
from tasks.text.preprocess import quality_classifier


class NotReady(Exception):
    """The run cannot start: the message names the config key and the problem."""


def problems(config: PipelineConfig) -> list[str]:
    """Every reason the run could not start, each naming the config key it is about."""
    found, modality = [], modalities.get(config.modality)
    for i, source in enumerate(config.sources):
        try:
            source = source.model_copy(update={"storage_options": secrets.resolve(
                source.storage_options, f"sources[{i}].storage_options")})
            collect.discover([source], modality)
        except (collect.SourceError, secrets.SecretUnavailable) as e:
            found.append(str(e).replace("source 0 ", f"source {i} ", 1))
        except OSError as e:
            found.append(f"source {i} ({source.uri}): cannot be listed ({type(e).__name__}: {e})")
    try:
        store = Store(config.output, secrets.resolve(config.storage_options, "storage_options"))
    except secrets.SecretUnavailable as e:
        return found + [str(e)]
    return found + output_and_suites(config, store)


def output_and_suites(config: PipelineConfig, store: Store) -> list[str]:
    """What the run checks itself before it reads anything (its sources it lists anyway)."""
    found = []
    try:
        store.check_writable()
    except OutputUnusable as e:
        found.append(str(e))
    for gate in gates.GATES:
        if getattr(config.gates, gate) != "off":
            try:
                gates.load_suite(gate, config.modality, config.gates.suites_dir, config.redacted())
            except (FileNotFoundError, ValueError) as e:
                found.append(f"gates.{gate}: {e}")
    tokenizer = getattr(config.export, "tokenizer", None)
    if tokenizer and tokenizer.path:
        try:
            tokens.identity(tokens.read_local(tokenizer.path), tokenizer, tokenizer.path)
        except tokens.TokenizerError as e:
            found.append(f"export.tokenizer: {e}")
    return found + quality_model(config) + semantic_model(config)


def quality_model(config: PipelineConfig) -> list[str]:
    """The quality classifier's model file loads, or its training documents exist."""
    settings = getattr(config.preprocess, "quality_classifier", None)
    if not settings or not settings.enabled:
        return []
    try:
        if settings.path:
            quality_classifier.load(settings)
        else:
            for side in ("positive", "negative"):
                uri = getattr(settings.train, side)
                if not quality_classifier.matching_files(uri)[1]:
                    return [f"preprocess.quality_classifier.train.{side}: {uri} matches no file"]
    except quality_classifier.QualityModelError as e:
        return [str(e)]
    except OSError as e:
        return [f"preprocess.quality_classifier: {type(e).__name__}: {e}"]
    return []


def semantic_model(config: PipelineConfig) -> list[str]:
    """Semantic dedup's fastText model reads as one that gives sentence vectors."""
    settings = getattr(getattr(config.dedup, "semantic", None), "model", None)
    if not settings or not config.dedup.semantic.enabled:
        return []
    try:
        fasttext_vectors.FastTextVectors(settings)
    except fasttext_vectors.FastTextModelError as e:
        return [f"dedup.semantic.model: {e}"]
    return []


ENV_PREFIXES = "CURATE_DEPLOYED_ENV_PREFIXES"  # what {env: ...} a deployed run may read (comma-separated prefixes)
DASK_ADDRESSES = "CURATE_DEPLOYED_DASK_ADDRESSES"  # the schedulers a deployed run's dask.address may name


def deployed_run_problems(config: PipelineConfig, environ) -> list[str]:
    """What a run started from a deployment may not ask for. Its parameters come from whoever reaches the
    Prefect API (the UI's form), and it runs where the worker's credentials are: it may not hold credentials
    in plain text (the database keeps them), read environment variables outside the allowed prefixes
    (`{env: AWS_SECRET_ACCESS_KEY}` sent as an endpoint's password would hand the worker's key to anyone), or
    send its tasks, and with them the resolved credentials, to a scheduler the deployment does not name."""
    data = config.model_dump(mode="json")
    found = []
    plain = secrets.plain_secrets(data)
    if plain:
        found.append(f"the run's parameters hold credentials in plain text ({', '.join(plain)}), which the Prefect "
                     "database keeps: name them with {env: VAR} or {secret: block}")
    prefixes = [p.strip() for p in environ.get(ENV_PREFIXES, "CURATE_").split(",") if p.strip()]
    for where, kind, name in secrets.references(data):
        if kind == "env" and not any(name.startswith(p) for p in prefixes):
            found.append(f"{where} names the environment variable {name}; a deployed run reads only variables "
                         f"named {' or '.join(p + '*' for p in prefixes)} ({ENV_PREFIXES} on the worker)")
    allowed = {a.strip() for a in environ.get(DASK_ADDRESSES, "").split(",") if a.strip()}
    if config.dask.address and config.dask.address not in allowed:
        found.append(f"dask.address {config.dask.address} is not a scheduler this deployment runs on: leave it out "
                     f"(the worker's DASK_SCHEDULER_ADDRESS is used) or list it in {DASK_ADDRESSES} on the worker")
    return found


def ensure_ready(config: PipelineConfig, store: Store) -> None:
    found = output_and_suites(config, store)
    if found:
        raise NotReady("the run cannot start: " + "; ".join(found))
