"""What an S3 server accepts from our client, per IMGPIPE_S3_CHECKSUM mode (docs/storage.md):

    .venv/bin/python -m tests.support.s3_probe           # the suite's Swift (started and stopped here)
    .venv/bin/python -m tests.support.s3_probe --moto    # the same probes against a moto server
    .venv/bin/python -m tests.support.s3_probe --refusing   # Swift's proxy that refuses checksums

For each mode: what a PutObject carries (a CRC32 trailer or header, or none and a signed SHA-256),
whether a plain upload and a 2-part multipart upload are accepted, whether a body altered after
signing is refused, and whether a wrong secret is refused. The tests use `corrupt_after_signing`.
"""

from __future__ import annotations

import argparse
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager

MiB = 1024 * 1024


class _OneByteFlipped(io.RawIOBase):
    """A body stream that yields the wrapped one with b"hello" turned into b"jello" (same length)."""

    def __init__(self, inner) -> None:
        self.inner, self.flipped = inner, False

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        if data and not self.flipped and b"hello" in data:
            data, self.flipped = data.replace(b"hello", b"jello", 1), True
        return data

    def __getattr__(self, name: str):  # seek/tell/len of botocore's aws-chunked wrapper
        return getattr(self.inner, name)


def corrupt_after_signing(request, **_kwargs: object) -> None:  # botocore AWSPreparedRequest
    """A botocore `before-send` hook: the body changes after botocore computed its checksum and
    signature (as a faulty NIC or proxy would change it); the first b"hello" becomes b"jello"."""
    if isinstance(request.body, bytes | bytearray):
        request.body = bytes(request.body).replace(b"hello", b"jello", 1)
    else:
        request.body = _OneByteFlipped(request.body)


def _code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__


def probe(endpoint: str, checksum: str) -> dict[str, str]:
    from image_pipeline.domain.objects.s3 import S3Store, make_s3_client

    client = make_s3_client(endpoint, "us-east-1", checksum=checksum)  # type: ignore[arg-type]
    bucket = f"probe-{checksum.replace('_', '-')}"
    client.create_bucket(Bucket=bucket)
    store = S3Store(client, bucket, "https://files", part_size=5 * MiB)
    sent: dict[str, str] = {}

    def record(request, **_kwargs: object) -> None:
        sent.update({k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})

    client.meta.events.register("before-send.s3.PutObject", record)
    got: dict[str, str] = {}
    try:
        store.put("plain", b"hello world")
        got["plain PutObject"] = "stored" if store.get("plain") == b"hello world" else "WRONG BYTES"
    except Exception as exc:
        got["plain PutObject"] = f"refused ({_code(exc)})"
    if "x-amz-trailer" in sent:
        got["checksum sent"] = f"{sent['x-amz-trailer']} in an aws-chunked trailer"
    elif crc := [h for h in sent if h.startswith("x-amz-checksum-")]:
        got["checksum sent"] = f"{crc[0]} header"
    else:
        got["checksum sent"] = f"none; x-amz-content-sha256 {sent.get('x-amz-content-sha256', '?')[:12]}..."
    try:
        with store.open_writer("multipart") as out:
            out.write(b"m" * (5 * MiB) + b"tail")
        got["2-part multipart upload"] = "stored" if store.size("multipart") == 5 * MiB + 4 else "WRONG SIZE"
    except Exception as exc:
        got["2-part multipart upload"] = f"refused ({_code(exc)})"
    altered = make_s3_client(endpoint, "us-east-1", checksum=checksum)  # type: ignore[arg-type]
    altered.meta.events.register("before-send.s3.PutObject", corrupt_after_signing)
    try:
        altered.put_object(Bucket=bucket, Key="altered", Body=b"hello world")
        got["body altered after signing"] = "STORED"
    except Exception as exc:
        got["body altered after signing"] = f"refused ({_code(exc)})"
    return got


def wrong_secret(endpoint: str) -> str:
    import boto3

    client = boto3.Session(
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"], aws_secret_access_key="not-the-secret"
    ).client("s3", endpoint_url=endpoint, region_name="us-east-1")
    try:
        client.put_object(Bucket="probe-when-supported", Key="forged", Body=b"forged")
        return "STORED"
    except Exception as exc:
        return f"refused ({_code(exc)})"


@contextmanager
def _server(moto: bool, refusing: bool = False) -> Iterator[str]:
    from tests.support.swift import ACCESS_KEY, SECRET_KEY, SwiftS3, swift_venv

    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION="us-east-1")
    if moto:
        from moto.server import ThreadedMotoServer

        from tests.support.servers import free_port

        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()
        return
    swift = SwiftS3(swift_venv()).start()
    os.environ["AWS_CA_BUNDLE"] = swift.ca_bundle
    try:
        yield swift.refusing_endpoint() if refusing else swift.endpoint
    finally:
        swift.stop()


def main() -> None:
    import botocore

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moto", action="store_true", help="probe a moto server instead of Swift")
    parser.add_argument("--refusing", action="store_true", help="probe Swift's proxy that refuses checksums")
    args = parser.parse_args()
    with _server(args.moto, args.refusing) as endpoint:
        name = "moto" if args.moto else "Swift 2.38.3 s3api" + (" (refusing proxy)" if args.refusing else "")
        print(f"server: {name} at {endpoint} (botocore {botocore.__version__})")
        for mode in ("when_supported", "when_required"):
            print(f"\nIMGPIPE_S3_CHECKSUM={mode}")
            for what, outcome in probe(endpoint, mode).items():
                print(f"  {what:28} {outcome}")
        print(f"\na wrong secret                 {wrong_secret(endpoint)}")


if __name__ == "__main__":
    main()
