"""OpenStack Swift with its `s3api` middleware: the real S3-compatible server the suite runs against.

moto (a mock) accepted a wrong secret and a wrong checksum; Swift checks SigV4 signatures, the
`x-amz-checksum-*` values (headers and aws-chunked trailers) and S3's 5 MiB part rule as AWS does
(docs/storage.md). It installs from PyPI as wheels, with no Docker and no root:

- `swift_venv()`: Swift in a venv of its own, outside the repo (its pins, e.g. eventlet, are none of
  the project's), cached per version under ~/.cache and reused; made on first use under a file lock,
  so the xdist workers of one `make test` install it once.
- `SwiftS3`: one server: swift.conf, the account/container/object rings, the four servers' configs
  and a self-signed certificate in a directory of its own, then the four processes on free loopback
  ports. The proxy speaks https so boto3 takes the path it takes against AWS (aws-chunked uploads
  with a trailing CRC32; over http it sends the checksum as a header instead).

Each xdist worker starts its own server (tests/conftest.py says why). Every process runs in its own
group and gets SIGTERM from the kernel if the worker dies (PR_SET_PDEATHSIG): nothing outlives the
session, even a killed one.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from filelock import FileLock

from image_pipeline.cli.processes import spawn, stop
from tests.support.servers import free_port

SWIFT_VERSION = "2.38.3"
ACCESS_KEY, SECRET_KEY, REGION = "test:tester", "testing", "us-east-1"  # tempauth's user test:tester
SERVERS = ("account", "container", "object", "proxy")
START_TIMEOUT_S = 90.0  # ~3 s when idle; far more when xdist workers and daemons share two cores


class SwiftUnavailable(RuntimeError):
    """Swift could not be installed or started (the fixture turns this into a test failure)."""


def swift_venv() -> Path:
    """The venv holding Swift (`IMGPIPE_SWIFT_VENV`, default ~/.cache/imgpipe-swift-<version>)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    root = Path(os.environ.get("IMGPIPE_SWIFT_VENV") or cache / f"imgpipe-swift-{SWIFT_VERSION}")
    done = root / ".imgpipe-installed"  # written last: a venv without it is a half-made one, made again
    if done.exists() and (root / "bin" / "swift-proxy-server").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{root}.lock", timeout=600):
        if done.exists() and (root / "bin" / "swift-proxy-server").exists():
            return root  # another worker made it while we waited
        shutil.rmtree(root, ignore_errors=True)
        uv = shutil.which("uv") or str(Path.home() / ".local/bin/uv")  # where `make install` puts it
        spec = f"swift=={SWIFT_VERSION}"
        if os.access(uv, os.X_OK):
            steps = [
                [uv, "venv", "--quiet", "--python", sys.executable, str(root)],
                [uv, "pip", "install", "--quiet", "--python", str(root / "bin/python"), "--only-binary=:all:", spec],
            ]
        else:  # no uv: the standard library's venv and pip do the same, slower
            steps = [
                [sys.executable, "-m", "venv", str(root)],
                [str(root / "bin/python"), "-m", "pip", "install", "--quiet", "--only-binary=:all:", spec],
            ]
        for cmd in steps:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if res.returncode != 0:
                raise SwiftUnavailable(f"installing Swift failed: {' '.join(cmd)}\n{res.stdout}\n{res.stderr}")
        done.write_text(spec + "\n")
    return root


_SWIFT_CONF = """[swift-hash]
swift_hash_path_prefix = imgpipe-tests
swift_hash_path_suffix = imgpipe-tests

[storage-policy:0]
name = default
default = yes
"""

# Backends: one process each (workers = 0: no forking; eventlet serves requests concurrently), storage
# in the server's own directory, no mount check (a plain directory, not a mounted disk).
_BACKEND_CONF = """[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
swift_dir = {dir}
devices = {dir}/devices
mount_check = false
log_level = WARNING

[pipeline:main]
pipeline = {name}-server

[app:{name}-server]
use = egg:swift#{name}
"""

# The proxy: s3api in front of tempauth (the S3 credentials are tempauth's users), slo for multipart
# uploads (a completed upload is a static large object), copy/dlo as Swift's sample pipeline has them.
_PROXY_CONF = """[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
swift_dir = {dir}
cert_file = {dir}/cert.pem
key_file = {dir}/key.pem
log_level = WARNING

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging listing_formats s3api tempauth copy slo dlo
    proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:s3api]
use = egg:swift#s3api
location = {region}

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
"""

# The three rings, one device each, built in one process (swift-ring-builder's create/add/rebalance
# through its library: nine CLI runs would each pay Swift's import time).
_BUILD_RINGS = """
import sys
from swift.common.ring import RingBuilder
here = sys.argv[1]
for name, port in zip(("account", "container", "object"), sys.argv[2:5]):
    builder = RingBuilder(6, 1, 1)  # 2**6 partitions, 1 replica, 1 hour between moves
    builder.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": int(port), "device": "d1",
                     "weight": 1})
    builder.rebalance()
    builder.save(f"{here}/{name}.builder")
    builder.get_ring().save(f"{here}/{name}.ring.gz")
"""


def _self_signed(directory: Path) -> None:
    """cert.pem/key.pem for 127.0.0.1; cert.pem is also the CA bundle clients trust (AWS_CA_BUNDLE)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imgpipe test swift")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


class SwiftS3:
    """One Swift (four processes) speaking S3 over https on a free loopback port."""

    def __init__(self, venv: Path, directory: Path | None = None) -> None:
        """`directory`: an empty one for the configs, rings and objects (default: a new temporary one)."""
        self.venv = venv
        self.dir = directory or Path(tempfile.mkdtemp(prefix="imgpipe-swift-"))
        self.ports = {name: free_port() for name in SERVERS}
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.ports['proxy']}"

    @property
    def ca_bundle(self) -> str:
        return str(self.dir / "cert.pem")

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {name}:\n" + (self.dir / f"{name}.log").read_text(errors="replace")[-chars:] for name in self.procs
        )

    def start(self) -> SwiftS3:
        (self.dir / "swift.conf").write_text(_SWIFT_CONF)
        (self.dir / "devices" / "d1").mkdir(parents=True)
        ports = [str(self.ports[n]) for n in ("account", "container", "object")]
        build = [self.venv / "bin/python", "-c", _BUILD_RINGS, self.dir, *ports]
        res = subprocess.run(build, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise SwiftUnavailable(f"building Swift's rings failed:\n{res.stderr[-3000:]}")
        _self_signed(self.dir)
        for name in SERVERS:
            template = _PROXY_CONF if name == "proxy" else _BACKEND_CONF
            conf = self.dir / f"{name}-server.conf"
            conf.write_text(template.format(port=self.ports[name], dir=self.dir, name=name, region=REGION))
            self.procs[name] = spawn(
                [self.venv / f"bin/swift-{name}-server", conf],
                output=self.dir / f"{name}.log",  # start-up errors (logs proper go to syslog, i.e. nowhere)
                die_with_parent=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """Until every server listens and the S3 API answers a signed request (ListBuckets)."""
        import boto3
        from botocore.config import Config

        deadline = time.monotonic() + START_TIMEOUT_S
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            verify=self.ca_bundle,
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}, connect_timeout=2),
        )
        pending = list(SERVERS)
        last_error: Exception | None = None
        while True:
            exited = [n for n, p in self.procs.items() if p.poll() is not None]
            if exited:
                raise SwiftUnavailable(f"swift-{exited[0]}-server exited at start-up\n{self.log_tail()}")
            pending = [n for n in pending if not _listens(self.ports[n])]
            if not pending:
                try:
                    client.list_buckets()
                    client.close()
                    return
                except Exception as exc:  # not up yet: connection refused, 503 while a backend warms up
                    last_error = exc
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        client.close()
        raise SwiftUnavailable(
            f"Swift's S3 API did not answer in {START_TIMEOUT_S:g} s (waiting for {pending or 'S3'}: {last_error})\n"
            + self.log_tail()
        )

    def stop(self) -> None:
        stop(list(self.procs.values()), grace=10)  # SIGTERM to each group, then SIGKILL to what is left
        shutil.rmtree(self.dir, ignore_errors=True)


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
