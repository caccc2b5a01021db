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


def is_plain(key: Any, value: Any) -> bool:
    """A credential option holding its value itself, not a reference to it."""
    return is_credential(key) and value not in (None, "") and not is_reference(value)


def replaced(data: Any, replace, where: str = "") -> Any:
    """`data` with each plain credential's value replaced by `replace(dotted key, value)`; references are
    left as they are."""
    if is_reference(data):
        return data
    if isinstance(data, dict):
        return {key: replace(f"{where}.{key}" if where else str(key), value) if is_plain(key, value)
                else replaced(value, replace, f"{where}.{key}" if where else str(key)) for key, value in data.items()}
    if isinstance(data, list):
        return [replaced(v, replace, f"{where}[{i}]") for i, v in enumerate(data)]
    return data


def plain_secrets(data: Any) -> list[str]:
    """The dotted keys under `data` that hold a credential in plain text."""
    found = []
    replaced(data, lambda where, value: found.append(where))
    return found


def masked(data: Any) -> Any:
    """`data` with every plain credential replaced by "***" (references stay: they are not secrets)."""
    return replaced(data, lambda where, value: "***")


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
