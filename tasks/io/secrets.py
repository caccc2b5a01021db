"""Credentials by reference: a config says where a secret is, never what it is.

Inside `storage_options` every text value is taken for a credential unless its key is one known to be safe
(SAFE_KEYS: endpoint_url, region_name, ...): a list of the secret names would miss the next filesystem's
(`headers.Authorization`, `connection_string`, `credentials`, `passphrase`...). A credential option is
either left out (s3fs then finds credentials as usual: AWS_* variables, ~/.aws, an instance role, fsspec's
config) or a reference:

    key: {env: AWS_ACCESS_KEY_ID}        an environment variable of the process that runs the flow
    secret: {secret: curate-s3-secret}   a Prefect Secret block (the server keeps it encrypted)

A flow run's parameters are written to the Prefect database and shown in the UI, so they hold references
only. The flow resolves them in its own process when it opens the output and the sources; the values stay
in memory and reach the Dask workers inside task arguments, never a parameter, log, manifest or file.
`curate run` given plain values moves them into its own environment and passes references
(`held_in_environment`); `curate serve` refuses them (`plain_secrets`), as a deployment would store them.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

SECRET_KEYS = {"key", "secret", "token", "password", "aws_access_key_id", "aws_secret_access_key",
               "aws_session_token", "access_key", "secret_key", "account_key", "sas_token", "client_secret",
               "api_key", "passphrase", "credentials", "connection_string", "authorization"}  # anywhere
# the options of fsspec filesystems (s3fs, gcsfs, adlfs, http) whose text values are never credentials
SAFE_KEYS = {"endpoint_url", "region_name", "region", "anon", "use_ssl", "client_kwargs", "config_kwargs",
             "s3_additional_kwargs", "requester_pays", "default_block_size", "default_fill_cache",
             "default_cache_type", "version_aware", "cache_regions", "max_concurrency", "skip_instance_cache",
             "use_listings_cache", "listings_expiry_time", "max_paths", "profile", "addressing_style",
             "signature_version", "s3", "verify", "project", "block_size", "timeout", "connect_timeout",
             "read_timeout", "retries", "max_attempts", "mode", "use_fips_endpoint", "account_name",
             "container_name", "cache_type", "simple_links", "same_scheme", "size_policy", "encoded",
             "serversideencryption", "acl", "storage_class", "location", "consistency", "fixed_upload_size"}
OPTIONS = "storage_options"
REFERENCE_KINDS = ("env", "secret")


class SecretUnavailable(ValueError):
    """A reference that cannot be resolved here: the message names the option and what is missing."""


def is_reference(value: Any) -> bool:
    return (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in REFERENCE_KINDS
            and isinstance(next(iter(value.values())), str))


def is_credential(key: Any) -> bool:
    return isinstance(key, str) and key.lower() in SECRET_KEYS


def is_plain(key: Any, value: Any, in_options: bool = False) -> bool:
    """A credential option holding its value itself, not a reference to it: a secret-named key anywhere, and
    inside storage options (`in_options`) any text value whose key is not a known-safe option."""
    if value in (None, "") or is_reference(value):
        return False
    return is_credential(key) or (in_options and isinstance(value, str) and str(key).lower() not in SAFE_KEYS)


def replaced(data: Any, replace, where: str = "", in_options: bool = False) -> Any:
    """`data` with each plain credential's value replaced by `replace(dotted key, value)`; references are
    left as they are."""
    if is_reference(data):
        return data
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            at = f"{where}.{key}" if where else str(key)
            out[key] = (replace(at, value) if is_plain(key, value, in_options)
                        else replaced(value, replace, at, in_options or key == OPTIONS))
        return out
    if isinstance(data, list):
        return [replaced(v, replace, f"{where}[{i}]", in_options) for i, v in enumerate(data)]
    return data


def references(data: Any, where: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, kind, name) of every reference under `data`."""
    if is_reference(data):
        (kind, name), = data.items()
        return [(where, kind, name)]
    if isinstance(data, dict):
        return [r for k, v in data.items() for r in references(v, f"{where}.{k}" if where else str(k))]
    if isinstance(data, list):
        return [r for i, v in enumerate(data) for r in references(v, f"{where}[{i}]")]
    return []


def plain_secrets(data: Any) -> list[str]:
    """The dotted keys under `data` that hold a credential in plain text."""
    found = []
    replaced(data, lambda where, value: found.append(where))
    return found


def masked(data: Any) -> Any:
    """`data` with every plain credential replaced by "***" (references stay: they are not secrets), and every
    URL without its user:password@ and query string (`public_url`)."""
    return public_urls(replaced(data, lambda where, value: "***"))


def public_urls(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: public_urls(value) for key, value in data.items()}
    if isinstance(data, list):
        return [public_urls(v) for v in data]
    return public_url(data) if isinstance(data, str) else data


def env_name(where: str) -> str:
    """The variable `curate run` keeps a plain credential in: CURATE_SECRET_SOURCES_0_STORAGE_OPTIONS_KEY."""
    return "CURATE_SECRET_" + re.sub(r"[^A-Z0-9]+", "_", where.upper()).strip("_")


def held_in_environment(data: Any) -> Any:
    """`data` with each plain credential moved into this process's environment and replaced by an
    `{env: ...}` reference to it."""
    def hold(where: str, value: Any) -> dict:
        os.environ[env_name(where)] = str(value)
        return {"env": env_name(where)}
    return replaced(data, hold)


def resolve(data: Any, where: str) -> Any:
    """`data` with every reference replaced by its value, read now, in this process."""
    if is_reference(data):
        (kind, name), = data.items()
        if kind == "env":
            if name not in os.environ:
                raise SecretUnavailable(f"{where} names the environment variable {name}, which is not set "
                                        "where the flow runs")
            return os.environ[name]
        return secret_block(name, where)
    if isinstance(data, dict):
        return {k: resolve(v, f"{where}.{k}") for k, v in data.items()}
    if isinstance(data, list):
        return [resolve(v, f"{where}[{i}]") for i, v in enumerate(data)]
    return data


def secret_block(name: str, where: str) -> str:
    from prefect.blocks.system import Secret

    try:
        return Secret.load(name, _sync=True).get()
    except ValueError as e:
        raise SecretUnavailable(f"{where} names the Prefect Secret block {name!r}, which cannot be loaded: {e}") from None


def public_url(url: str) -> str:
    """`url` as curate records it (columns, manifest, ledger, logs): without user:password@ and without a
    query string or fragment, where presigned URLs carry their signatures. A local path is left as it is."""
    if "://" not in url or not ("@" in url or "?" in url or "#" in url):
        return url
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
