import dagster as dg

from image_pipeline.domain.runs import PARTITIONS_DEF_NAME

# One partition per accepted upload; the key is the public request_id.
request_partitions_def = dg.DynamicPartitionsDefinition(name=PARTITIONS_DEF_NAME)
