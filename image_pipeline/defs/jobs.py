import dagster as dg

from image_pipeline.defs.assets import request_assets
from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.settings import Settings, get_settings

_SELECTION = dg.AssetSelection.assets(*request_assets)

# In-process executor: all steps share one process (no ~1 s subprocess start per step) and one set of
# connections. Every request below IMGPIPE_FANOUT_THRESHOLD runs here, whatever the deployment uses.
process_request_job = dg.define_asset_job(
    name="process_request_job",
    selection=_SELECTION,
    partitions_def=request_partitions_def,
    executor_def=dg.in_process_executor,
    description="Process one request (one partition): validate, recompress, write the output CSV, notify.",
)
FANOUT_JOB_NAME = "process_request_fanout_job"


def request_jobs(settings: Settings) -> list:
    """The jobs the upload sensor chooses from: the in-process job, plus the same assets on the
    configured executor (IMGPIPE_EXECUTOR) for large requests when that is not in-process."""
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


# Built once per code-location process from the environment (the executor is deployment configuration).
REQUEST_JOBS = request_jobs(get_settings())
