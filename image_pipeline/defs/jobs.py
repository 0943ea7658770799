"""The jobs the upload sensor chooses from (`image_pipeline.domain.runs.job_name_for`).

`process_request_job` runs every step in one process (no subprocess start per step, one set of
connections): every request below IMGPIPE_FANOUT_THRESHOLD runs there, whatever the deployment uses.
With another executor configured (IMGPIPE_EXECUTOR), the same assets also get a fan-out job whose
chunk steps run on that executor. The executor is deployment configuration: read once per process.
"""

import dagster as dg

from image_pipeline.defs import assets
from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.domain.runs import FANOUT_JOB_NAME, JOB_NAME
from image_pipeline.domain.settings import Settings, get_settings

_SELECTION = dg.AssetSelection.assets(*assets.request_assets)

process_request_job = dg.define_asset_job(
    name=JOB_NAME,
    selection=_SELECTION,
    partitions_def=request_partitions_def,
    executor_def=dg.in_process_executor,
    description="Process one request (one partition): validate, recompress, write the output CSV, notify.",
)


def request_jobs(settings: Settings) -> list:
    """The in-process job, plus the fan-out job when the configured executor is not in-process."""
    if settings.executor == "in_process":
        return [process_request_job]
    from image_pipeline.defs.executors import build_executor

    fanout = dg.define_asset_job(
        name=FANOUT_JOB_NAME,
        selection=_SELECTION,
        partitions_def=request_partitions_def,
        executor_def=build_executor(settings),
        description=f"Process one large request with its chunk steps on the {settings.executor} executor.",
    )
    return [process_request_job, fanout]


REQUEST_JOBS = request_jobs(get_settings())


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(jobs=REQUEST_JOBS)
