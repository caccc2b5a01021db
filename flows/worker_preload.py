"""Loaded by a worker before its first task (flows.warm): the modules the stages use and the first calls of
the compiled text kernels (MinHash and the word rules: about 0.8 s to load from numba's cache). Imported by
the forkserver of a local cluster, its workers fork with all of it in memory."""

import great_expectations  # noqa: F401  seconds to import
import pyarrow as pa

import tasks.stages  # noqa: F401  the stages and every modality
from tasks import modalities
from tasks.text.preprocess import load_kernels

modalities.get("text").dedup().sketch(pa.table({"id": ["warm"], "text": ["a first call loads the kernel"]}))
load_kernels()
