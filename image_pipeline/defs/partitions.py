import dagster as dg

# One partition per accepted upload; the key is the public request_id.
request_partitions_def = dg.DynamicPartitionsDefinition(name="requests")
