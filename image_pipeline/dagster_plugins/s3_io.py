"""The S3 client of the IO manager that steps on other processes use to hand each other their outputs.

dagster-aws's `S3Resource.get_client()` builds a new boto3 Session each time it is called, i.e. for
every run's IO manager, and a new Session re-parses botocore's endpoint and S3 models: in a Celery run
worker that was more CPU than anything else a small request's run did (docs/scale-out.md, "Measured").
Here it returns this process's shared client for the endpoint and region instead
(`image_pipeline.domain.objects.s3.shared_s3_client`, a per-process cache keyed by that configuration).

Imported only when an S3 IO manager is configured (dagster_aws is slow to import).
"""

from __future__ import annotations

from dagster_aws.s3 import S3Resource


class SharedClientS3Resource(S3Resource):
    """S3Resource configured with `endpoint_url`, `region_name` and `checksum` only (S3Resource's other
    fields are not used). `checksum` is IMGPIPE_S3_CHECKSUM: the IO manager's uploads (s3transfer's
    upload_fileobj) carry the same checksums as the pipeline's, so a store that refuses them refuses
    neither or both."""

    checksum: str = "when_supported"  # image_pipeline.domain.objects.s3.S3Checksum (Dagster config: a str)

    def get_client(self):  # botocore S3 client
        from image_pipeline.domain.objects.s3 import shared_s3_client

        return shared_s3_client(self.endpoint_url, self.region_name or "us-east-1", self.checksum)  # type: ignore[arg-type]
