"""Credentials by reference: a config says where a secret is, never what it is.

A credential option (`key`, `secret`, `token`, `password`, ...) anywhere in `storage_options` is either
left out (s3fs then finds credentials as usual: AWS_* variables, ~/.aws, an instance role, fsspec's
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

SECRET_KEYS = {"key", "secret", "token", "password", "aws_access_key_id", "aws_secret_access_key",
               "aws_session_token", "access_key", "secret_key", "account_key", "sas_token", "client_secret"}
REFERENCE_KINDS = ("env", "secret")


class SecretUnavailable(ValueError):
    """A reference that cannot be resolved here: the message names the option and what is missing."""


def is_reference(value: Any) -> bool:
    return (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in REFERENCE_KINDS
            and isinstance(next(iter(value.values())), str))


def is_credential(key: Any) -> bool:
    return isinstance(key, str) and key.lower() in SECRET_KEYS


def plain_secrets(data: Any, where: str = "") -> list[str]:
    """The dotted keys under `data` that hold a credential in plain text."""
    if isinstance(data, dict):
        found = []
        for key, value in data.items():
            name = f"{where}.{key}" if where else str(key)
            if is_credential(key) and value not in (None, "") and not is_reference(value):
                found.append(name)
            elif not is_reference(value):
                found += plain_secrets(value, name)
        return found
    if isinstance(data, list):
        return [k for i, v in enumerate(data) for k in plain_secrets(v, f"{where}[{i}]")]
    return []


def masked(data: Any) -> Any:
    """`data` with every plain credential replaced by "***" (references stay: they are not secrets)."""
    if isinstance(data, dict):
        return {k: ("***" if is_credential(k) and v not in (None, "") and not is_reference(v) else masked(v))
                for k, v in data.items()}
    if isinstance(data, list):
        return [masked(v) for v in data]
    return data


def env_name(where: str) -> str:
    """The variable `curate run` keeps a plain credential in: CURATE_SECRET_SOURCES_0_STORAGE_OPTIONS_KEY."""
    return "CURATE_SECRET_" + re.sub(r"[^A-Z0-9]+", "_", where.upper()).strip("_")


def held_in_environment(data: Any, where: str = "") -> Any:
    """`data` with each plain credential moved into this process's environment and replaced by an
    `{env: ...}` reference to it."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            name = f"{where}.{key}" if where else str(key)
            if is_credential(key) and value not in (None, "") and not is_reference(value):
                os.environ[env_name(name)] = str(value)
                out[key] = {"env": env_name(name)}
            else:
                out[key] = held_in_environment(value, name)
        return out
    if isinstance(data, list):
        return [held_in_environment(v, f"{where}[{i}]") for i, v in enumerate(data)]
    return data


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
