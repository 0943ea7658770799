"""The product catalogue a caller uploads: the CSV rules (csv_input), the parsed rows as stored (rows), the
output CSV (csv_output). Used by the API check, the pipeline and the webhook events alike."""
