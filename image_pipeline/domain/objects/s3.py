"""Objects in an S3 bucket (AWS or any S3-compatible endpoint) through one shared boto3 client per process."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from types import TracebackType
from typing import Literal

from image_pipeline.domain.objects import ObjectNotFound, check_key
from image_pipeline.domain.process_cache import ProcessCache

log = logging.getLogger(__name__)

# Answers that mean "no such object". AWS answers 403 AccessDenied instead of 404 when the credentials
# lack s3:ListBucket (it may not reveal whether a key exists); a HEAD carries no body, so its 403 has
# only the status. A 403 with another code (SignatureDoesNotMatch, InvalidAccessKeyId) is a
# misconfigured store and stays an error.
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound", "403", "AccessDenied"})


def is_missing(exc: Exception) -> bool:
    """Whether a botocore error says the object is not there (or may not be seen: see above)."""
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _MISSING_CODES


S3_MIN_PART_SIZE = 5 * 1024 * 1024  # S3's rule: every part of a multipart upload but the last is at least 5 MiB
DEFAULT_PART_SIZE = 8 * 1024 * 1024  # boto3's own multipart chunk size

# botocore's two checksum switches (IMGPIPE_S3_CHECKSUM sets both): "when_supported" is boto3's default
# since 1.36 (a CRC32 with every upload: a header over http, an aws-chunked trailer over https);
# "when_required" sends one only where the S3 API demands it (DeleteObjects), for stores that refuse them.
S3Checksum = Literal["when_supported", "when_required"]


class S3MultipartWriter:
    """An S3 object uploaded as it is produced: parts of `part_size` bytes (S3's multipart upload), so at
    most about one part is in memory whatever the object's size.

    An object smaller than one part is sent with a single PutObject at the end (one request instead of
    three). On an exception the multipart upload is aborted, so S3 keeps no orphan parts (which would be
    billed until a lifecycle rule removed them); the exception propagates.
    """

    def __init__(self, client, bucket: str, key: str, content_type: str, part_size: int) -> None:
        self.client, self.bucket, self.key, self.content_type = client, bucket, check_key(key), content_type
        self.part_size = part_size
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._upload_id: str | None = None
        self._parts: list[dict] = []

    def write(self, data: bytes) -> int:
        if data:
            self._pieces.append(bytes(data))
            self._buffered += len(data)
            if self._buffered >= self.part_size:
                self._upload_part(self._take())
        return len(data)

    def _take(self) -> bytes:
        body = b"".join(self._pieces)
        self._pieces, self._buffered = [], 0
        return body

    def _upload_part(self, body: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )["UploadId"]
        number = len(self._parts) + 1
        resp = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=body
        )
        part = {"PartNumber": number, "ETag": resp["ETag"]}
        for checksum in ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME", "ChecksumSHA1", "ChecksumSHA256"):
            if resp.get(checksum):
                part[checksum] = resp[checksum]  # botocore checksums each part by default; S3 wants them back
        self._parts.append(part)

    def _finish(self) -> None:
        if self._upload_id is None:
            self.client.put_object(Bucket=self.bucket, Key=self.key, Body=self._take(), ContentType=self.content_type)
            return
        if self._buffered:
            self._upload_part(self._take())  # the last part may be smaller than 5 MiB
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
        )

    def abort(self) -> None:
        self._pieces, self._buffered = [], 0
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)
            except Exception:  # the original error matters more; a lifecycle rule is the backstop
                log.exception("could not abort multipart upload %s of %s", upload_id, self.key)

    def __enter__(self) -> S3MultipartWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise


class S3Store:
    """Objects in an S3 bucket through one shared boto3 client (boto3 clients are thread-safe)."""

    def __init__(
        self,
        client,  # boto3 client
        bucket: str,
        public_base_url: str,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        if part_size < S3_MIN_PART_SIZE:
            raise ValueError(f"S3 part size {part_size} is below S3's minimum of {S3_MIN_PART_SIZE} bytes")
        self.client, self.bucket = client, bucket
        self.public_base_url = public_base_url.rstrip("/")
        self.part_size = part_size

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(Bucket=self.bucket, Key=check_key(key), Body=data, ContentType=content_type)

    def open_writer(self, key: str, content_type: str = "application/octet-stream") -> S3MultipartWriter:
        """Uploaded in parts of `part_size` (`IMGPIPE_S3_PART_SIZE`) as it is written."""
        return S3MultipartWriter(self.client, self.bucket, key, content_type, self.part_size)

    def get(self, key: str) -> bytes:
        return self._get_body(key).read()

    def _get_body(self, key: str):  # botocore StreamingBody
        try:
            return self.client.get_object(Bucket=self.bucket, Key=check_key(key))["Body"]
        except Exception as exc:
            if is_missing(exc):
                raise ObjectNotFound(key) from exc
            raise

    def size(self, key: str) -> int | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=check_key(key))["ContentLength"]
        except Exception as exc:
            if is_missing(exc):
                return None
            raise

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=check_key(key))  # S3 answers 204 for a missing key too

    def delete_prefix(self, prefix: str) -> int:
        n = 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=check_key(prefix.rstrip("/")) + "/"):
            objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objs:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objs, "Quiet": True})
                n += len(objs)
        return n

    def iter_chunks(self, key: str, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        yield from self._get_body(key).iter_chunks(chunk_size)

    def public_url(self, key: str) -> str:
        return f"{self.public_base_url}/{check_key(key)}"

    def ping(self) -> None:
        """The bucket answers HEAD with these credentials (a wrong key or a missing bucket raises too)."""
        self.client.head_bucket(Bucket=self.bucket)

    def create_bucket_if_missing(self) -> bool:
        """Make the bucket unless it is there (True when it was made): for a store the deployment runs
        itself (compose's); a cloud bucket is made with its owner's tooling, with its policies."""
        from botocore.exceptions import ClientError

        try:
            self.ping()
            return False
        except ClientError as exc:  # a 403 (no access) is no reason to make one: it stays an error
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
        self.client.create_bucket(Bucket=self.bucket)
        return True


def make_s3_client(
    endpoint_url: str | None,
    region: str,
    max_pool: int = 64,
    checksum: S3Checksum = "when_supported",
    *,
    max_attempts: int = 5,
    timeout: float | None = None,
):
    """One boto3 S3 client with a connection pool big enough for concurrent uploads.

    No `Expect: 100-continue` on small bodies (botocore sends it on every PutObject: a round trip per
    object, headers first, then wait for `100 Continue`, then the body). `checksum` (IMGPIPE_S3_CHECKSUM)
    keeps botocore's default CRC32 unless a store refuses it: turning it off saved no measurable CPU
    (docs/performance.md; zlib's CRC32 is C) and drops S3's end-to-end integrity check
    (docs/storage.md). `max_attempts` and `timeout` (connect and read, seconds; None = botocore's 60)
    are for a probe that must answer quickly rather than ride out an outage.
    """
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(
            max_pool_connections=max_pool,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            **({"connect_timeout": timeout, "read_timeout": timeout} if timeout is not None else {}),
            s3={"addressing_style": "path"} if endpoint_url else None,
            request_checksum_calculation=checksum,
            response_checksum_validation=checksum,
        ),
    )
    client.meta.events.register("before-sign.s3.PutObject", _no_expect_for_small_bodies)
    return client


def _new_shared_s3_client(endpoint_url: str | None, region: str, checksum: S3Checksum):
    return make_s3_client(endpoint_url, region, checksum=checksum)


# One client per (endpoint, region, checksum) per process, reused by every run a long-lived process
# executes: building a client (and more so a boto3 Session) parses botocore's models (domain.process_cache).
_S3_CLIENTS = ProcessCache(_new_shared_s3_client, close=lambda c: c.close())


def _new_probe_s3_client(endpoint_url: str | None, region: str, checksum: S3Checksum, timeout: float):
    return make_s3_client(endpoint_url, region, max_pool=2, checksum=checksum, max_attempts=1, timeout=timeout)


# The readiness probe's client: one try, short timeouts. The shared client retries a refused connection
# with backoff for up to ~15 s, longer than a probe may take, and its threads would pile up behind it.
_PROBE_S3_CLIENTS = ProcessCache(_new_probe_s3_client, close=lambda c: c.close())


def probe_s3_client(endpoint_url: str | None, region: str, checksum: S3Checksum, timeout: float):  # botocore S3 client
    """This process's client for readiness probes of `endpoint_url` (one attempt, `timeout` s to connect and read)."""
    return _PROBE_S3_CLIENTS.get(endpoint_url, region, checksum, timeout)


def shared_s3_client(
    endpoint_url: str | None, region: str, checksum: S3Checksum = "when_supported"
):  # botocore S3 client
    """This process's S3 client for `endpoint_url`, `region` and `checksum` (credentials: the standard AWS
    chain, resolved when the client is first built)."""
    return _S3_CLIENTS.get(endpoint_url, region, checksum)


EXPECT_CONTINUE_MIN_BYTES = 8 * 1024 * 1024


def _no_expect_for_small_bodies(request, **_kwargs: object) -> None:  # botocore AWSRequest
    """botocore asks for `Expect: 100-continue` on every PutObject; below a few MB the extra round trip
    costs more than it can save (it only avoids sending a body the server would refuse). `Expect` is
    not a signed header, so dropping it before signing changes nothing else."""
    size = _body_size(request.body)
    if size is not None and size < EXPECT_CONTINUE_MIN_BYTES:
        del request.headers["Expect"]  # HTTPHeaders (email.message.Message): no error when absent


def _body_size(body: object) -> int | None:
    if isinstance(body, bytes | bytearray):
        return len(body)
    try:  # a file-like body; s3transfer's (upload_fileobj, the Dagster S3 IO manager) seek() returns None
        pos = body.tell()  # type: ignore[attr-defined]
        body.seek(0, os.SEEK_END)  # type: ignore[attr-defined]
        end = body.tell()  # type: ignore[attr-defined]
        body.seek(pos)  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError, TypeError):
        return None
    return end - pos
