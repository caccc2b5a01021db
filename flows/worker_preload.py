"""Loaded by a worker before its first task (flows.warm): the modules the stages use, the first calls of
the compiled text kernels (MinHash and the word rules: about 0.8 s to load from numba's cache), and two
cached scans of the installed packages' metadata that every worker otherwise makes on its own (Dask's
package versions, sent when a worker registers, and Prefect's collections, read at the first task run):
half a second of CPU each. Imported by the forkserver of a local cluster, its workers fork with all of it
in memory."""

import great_expectations  # noqa: F401  seconds to import
import pyarrow as pa
from distributed.versions import get_versions
from prefect.plugins import load_prefect_collections

import tasks.stages  # noqa: F401  the stages and every modality
from tasks import modalities
from tasks.text.preprocess import load_kernels

modalities.get("text").dedup().sketch(pa.table({"id": ["warm"], "text": ["a first call loads the kernel"]}))
load_kernels()
get_versions()
load_prefect_collections()
