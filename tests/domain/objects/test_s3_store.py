"""The S3 store against the suite's real S3-compatible server (OpenStack Swift's s3api, over https):
every operation the service uses, the protocol checks a mock did not make (a wrong secret, a body
that does not match its checksum or signed hash), and IMGPIPE_S3_CHECKSUM (docs/storage.md)."""

from __future__ import annotations

import hashlib

import pytest
from botocore.exceptions import ClientError
from pydantic import ValidationError

from image_pipeline.domain.objects import ObjectNotFound
from image_pipeline.domain.objects.s3 import S3_MIN_PART_SIZE, S3MultipartWriter, S3Store, make_s3_client
from image_pipeline.domain.services import make_store
from image_pipeline.domain.settings import Settings
from tests.support.s3_probe import corrupt_after_signing
from tests.support.swift import REGION

MiB = 1024 * 1024


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def test_every_store_operation_on_a_real_s3_server(make_settings, bucket) -> None:
    store = make_store(make_settings(s3_bucket=bucket, public_base_url="https://cdn.example/files"))
    assert isinstance(store, S3Store)
    store.put("requests/a/input.csv", b"S.No.,Product Name\r\n", "text/csv")
    store.put("requests/a/images/0000000.jpg", b"\xff\xd8jpeg", "image/jpeg")
    store.put("requests/ab/images/0000000.jpg", b"\xff\xd8other", "image/jpeg")  # a sibling prefix

    assert store.get("requests/a/input.csv") == b"S.No.,Product Name\r\n"
    assert store.size("requests/a/images/0000000.jpg") == 6 and store.exists("requests/a/images/0000000.jpg")
    assert b"".join(store.iter_chunks("requests/a/input.csv", chunk_size=4)) == b"S.No.,Product Name\r\n"
    head = store.client.head_object(Bucket=bucket, Key="requests/a/input.csv")
    assert head["ContentType"] == "text/csv"
    assert store.public_url("requests/a/input.csv") == "https://cdn.example/files/requests/a/input.csv"

    assert store.size("requests/a/missing") is None and not store.exists("requests/a/missing")
    with pytest.raises(ObjectNotFound):
        store.get("requests/a/missing")
    with pytest.raises(ObjectNotFound):
        list(store.iter_chunks("requests/a/missing"))

    assert store.delete_prefix("requests/a") == 2
    listed = store.client.list_objects_v2(Bucket=bucket, Prefix="requests/")
    assert [o["Key"] for o in listed["Contents"]] == ["requests/ab/images/0000000.jpg"]  # "a/" is not "ab/"
    assert store.delete_prefix("requests/a") == 0


def test_a_part_below_5_mib_is_refused_and_the_upload_aborted(s3_endpoint, bucket) -> None:
    """S3's part rule, which S3_MIN_PART_SIZE (and IMGPIPE_S3_PART_SIZE's minimum) encode: the server
    refuses to complete an upload whose non-last part is smaller; the writer aborts it (no parts kept)."""
    client = make_s3_client(s3_endpoint, REGION)
    writer = S3MultipartWriter(client, bucket, "requests/x/small-parts", "text/csv", part_size=1 * MiB)
    with pytest.raises(ClientError) as refused, writer as out:
        for _ in range(3):
            out.write(b"z" * MiB)
    assert _error_code(refused.value) == "EntityTooSmall"
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert S3Store(client, bucket, "https://files").size("requests/x/small-parts") is None
    assert S3_MIN_PART_SIZE == 5 * MiB


def test_a_wrong_secret_is_refused(make_settings, bucket, monkeypatch) -> None:
    """Fails against moto (the suite's S3 before Swift): moto stored the object whatever the secret."""
    import boto3

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # the default session keeps the credentials it read
    wrong = S3Store(make_s3_client(make_settings().s3_endpoint_url, REGION), bucket, "https://files")
    with pytest.raises(ClientError) as refused:
        wrong.put("requests/x/forged", b"forged")
    assert _error_code(refused.value) == "SignatureDoesNotMatch"
    monkeypatch.undo()
    assert make_store(make_settings(s3_bucket=bucket)).size("requests/x/forged") is None


@pytest.mark.parametrize(
    ("checksum", "code"),
    [("when_supported", "BadDigest"), ("when_required", "XAmzContentSHA256Mismatch")],
)
def test_a_body_altered_in_transit_is_refused_in_both_checksum_modes(make_settings, bucket, checksum, code) -> None:
    """when_supported: the CRC32 in the aws-chunked trailer no longer matches; when_required: no CRC32,
    but botocore then signs the payload's SHA-256, which no longer matches. Either way nothing is stored.
    Both cases fail against moto, which stored the altered body (docs/storage.md)."""
    settings = make_settings(s3_bucket=bucket, s3_checksum=checksum)
    client = make_s3_client(settings.s3_endpoint_url, REGION, checksum=settings.s3_checksum)  # not the shared one
    client.meta.events.register("before-send.s3.PutObject", corrupt_after_signing)
    store = S3Store(client, bucket, "https://files")
    with pytest.raises(ClientError) as refused:
        store.put("requests/x/altered", b"hello world")
    assert _error_code(refused.value) == code
    assert store.size("requests/x/altered") is None


@pytest.mark.parametrize("checksum", ["when_supported", "when_required"])
def test_imgpipe_s3_checksum_decides_what_uploads_carry(make_settings, bucket, monkeypatch, checksum) -> None:
    """IMGPIPE_S3_CHECKSUM reaches the store's client: when_supported (boto3's default) sends a CRC32
    (over https an aws-chunked trailer), when_required sends none and signs the payload's SHA-256
    instead. Fails on main before the setting existed: every upload carried the trailer."""
    monkeypatch.setenv("IMGPIPE_S3_CHECKSUM", checksum)
    settings = Settings(_env_file=None, **make_settings(s3_bucket=bucket).model_dump(exclude={"s3_checksum"}))
    assert settings.s3_checksum == checksum
    store = make_store(settings)
    assert store.client.meta.config.request_checksum_calculation == checksum
    assert store.client.meta.config.response_checksum_validation == checksum
    sent: list[dict[str, str]] = []

    def record(request, **_kwargs: object) -> None:
        sent.append({k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})

    store.client.meta.events.register("before-send.s3.PutObject", record, unique_id="record-checksums")
    try:
        store.put("requests/x/object.bin", b"hello world")
    finally:
        store.client.meta.events.unregister("before-send.s3.PutObject", unique_id="record-checksums")
    assert store.get("requests/x/object.bin") == b"hello world"
    [headers] = sent
    if checksum == "when_supported":
        assert headers["x-amz-trailer"] == "x-amz-checksum-crc32" and headers["content-encoding"] == "aws-chunked"
        assert headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    else:
        assert not [h for h in headers if h.startswith("x-amz-checksum") or h == "x-amz-trailer"]
        assert headers["x-amz-content-sha256"] == hashlib.sha256(b"hello world").hexdigest()


def test_imgpipe_s3_checksum_refuses_other_values(monkeypatch) -> None:
    monkeypatch.setenv("IMGPIPE_S3_CHECKSUM", "off")
    with pytest.raises(ValidationError, match="s3_checksum"):
        Settings(_env_file=None)
