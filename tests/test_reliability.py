"""A run that cannot finish stops early and says why, and leaves nothing half-written behind."""

from __future__ import annotations

import pytest
from prefect.exceptions import FailedRun

from conftest import E2E, e2e_config
from flows.config import PipelineConfig
from flows.curate import run_pipeline


def test_a_run_whose_output_bucket_is_missing_fails_before_any_work_and_creates_no_bucket(s3, tmp_path):
    fs, options = s3
    config = PipelineConfig.model_validate(e2e_config(str(E2E / "*.jsonl*"), "s3://no-such-bucket/out",
                                                      storage_options={"client_kwargs": options["client_kwargs"]}))
    with pytest.raises(FailedRun, match=r"^the run cannot start: output s3://no-such-bucket/out: bucket "
                                        r"'no-such-bucket' does not exist \(curate does not create buckets"):
        run_pipeline(config)
    assert not fs.exists("no-such-bucket")
