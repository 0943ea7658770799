import dagster as dg

from image_pipeline.defs.assets import request_assets
from image_pipeline.defs.partitions import request_partitions_def

# In-process executor: the four steps share one process (no ~1 s subprocess start per step) and one
# set of connections. Scale-out executors are chosen by configuration (see README "Scaling out").
process_request_job = dg.define_asset_job(
    name="process_request_job",
    selection=dg.AssetSelection.assets(*request_assets),
    partitions_def=request_partitions_def,
    executor_def=dg.in_process_executor,
    description="Process one request (one partition): validate, recompress, write the output CSV, notify.",
)
