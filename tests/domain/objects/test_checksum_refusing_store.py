"""IMGPIPE_S3_CHECKSUM=when_required against a store that refuses boto3's default checksums: the suite's
Swift through a proxy that answers uploads carrying `x-amz-checksum-*` or an aws-chunked trailer with
501 NotImplemented (tests/support/swift_configs.py), as some S3-compatible stores do (docs/storage.md).
Fails on main before the setting existed: every upload carried boto3's default CRC32 and was refused."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from image_pipeline.domain.objects.s3 import S3_MIN_PART_SIZE
from image_pipeline.domain.services import make_store

MiB = 1024 * 1024


def test_boto3s_default_checksums_are_refused_by_such_a_store(make_settings, bucket, refusing_s3_endpoint) -> None:
    """The premise, checked: with the default every kind of upload the service makes is refused."""
    store = make_store(make_settings(s3_bucket=bucket, s3_endpoint_url=refusing_s3_endpoint, s3_part_size=5 * MiB))
    with pytest.raises(ClientError) as refused:
        store.put("requests/x/input.csv", b"S.No.,Product Name\r\n", "text/csv")
    assert refused.value.response["Error"]["Code"] == "NotImplemented"
    with pytest.raises(ClientError) as refused, store.open_writer("requests/x/output.csv") as out:
        out.write(b"o" * S3_MIN_PART_SIZE)  # one full part: a multipart upload
    assert refused.value.response["Error"]["Code"] == "NotImplemented"


def test_when_required_stores_reads_streams_and_deletes_there(make_settings, bucket, refusing_s3_endpoint) -> None:
    settings = make_settings(
        s3_bucket=bucket, s3_endpoint_url=refusing_s3_endpoint, s3_checksum="when_required", s3_part_size=5 * MiB
    )
    store = make_store(settings)
    store.put("requests/x/input.csv", b"S.No.,Product Name\r\n", "text/csv")
    assert store.get("requests/x/input.csv") == b"S.No.,Product Name\r\n"
    first, last = bytes(range(256)) * (S3_MIN_PART_SIZE // 256), b"last part"
    body = first + last
    with store.open_writer("requests/x/output.csv", "text/csv") as out:
        out.write(first)  # a 5 MiB part...
        out.write(last)  # ...and the last
    assert store.get("requests/x/output.csv") == body
    etag = store.client.head_object(Bucket=bucket, Key="requests/x/output.csv")["ETag"]
    assert etag.strip('"').endswith("-2")  # really a 2-part multipart upload
    assert b"".join(store.iter_chunks("requests/x/output.csv")) == body
    assert store.delete_prefix("requests/x") == 2 and not store.exists("requests/x/input.csv")
