"""The registry: the one module that names every modality (docs/architecture.md)."""

from __future__ import annotations

from tasks.audio import AUDIO
from tasks.image import IMAGE
from tasks.modality import Modality
from tasks.text import TEXT

MODALITIES: dict[str, Modality] = {m.name: m for m in (TEXT, IMAGE, AUDIO)}
NAMES = tuple(MODALITIES)


def get(name: str) -> Modality:
    try:
        return MODALITIES[name]
    except KeyError:
        raise ValueError(f"unknown modality {name!r}; one of {', '.join(NAMES)}") from None
