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
from tests.support.swift_configs import (
    BACKEND_CONF,
    BUILD_RINGS,
    PROXY_CONF,
    REFUSE_CHECKSUMS,
    REFUSE_FILTER,
    REFUSE_PIPELINE,
    SWIFT_CONF,
)

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
    """One Swift (four processes) speaking S3 over https on a free loopback port (and, on demand, a
    second proxy that refuses checksums: `refusing_endpoint`)."""

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
        (self.dir / "swift.conf").write_text(SWIFT_CONF)
        (self.dir / "devices" / "d1").mkdir(parents=True)
        ports = [str(self.ports[n]) for n in ("account", "container", "object")]
        build = [self.venv / "bin/python", "-c", BUILD_RINGS, self.dir, *ports]
        res = subprocess.run(build, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise SwiftUnavailable(f"building Swift's rings failed:\n{res.stderr[-3000:]}")
        _self_signed(self.dir)
        for name in SERVERS:
            fields = {"refuse": "", "refuse_filter": ""}
            self._spawn(name, name, (PROXY_CONF if name == "proxy" else BACKEND_CONF), fields)
        try:
            self._wait_ready(list(SERVERS), self.endpoint)
        except BaseException:
            self.stop()
            raise
        return self

    def refusing_endpoint(self) -> str:
        """A second proxy on the same backends that refuses uploads carrying boto3's default checksums
        with 501 NotImplemented, as some S3-compatible stores do (swift_configs.REFUSE_CHECKSUMS).
        Started on first use: one more process (~70 MB)."""
        name = "refusing-proxy"
        if name not in self.procs:
            (self.dir / "imgpipe_refuse_checksums.py").write_text(REFUSE_CHECKSUMS)
            self.ports[name] = free_port()
            fields = {"refuse": REFUSE_PIPELINE, "refuse_filter": REFUSE_FILTER}
            self._spawn(name, "proxy", PROXY_CONF, fields, env=dict(os.environ, PYTHONPATH=str(self.dir)))
            self._wait_ready([name], f"https://127.0.0.1:{self.ports[name]}")
        return f"https://127.0.0.1:{self.ports[name]}"

    def _spawn(self, name: str, server: str, template: str, fields: dict[str, str], env=None) -> None:
        conf = self.dir / f"{name}-server.conf"
        conf.write_text(template.format(port=self.ports[name], dir=self.dir, name=server, region=REGION, **fields))
        self.procs[name] = spawn(
            [self.venv / f"bin/swift-{server}-server", conf],
            env=env,
            output=self.dir / f"{name}.log",  # start-up errors (logs proper go to syslog, i.e. nowhere)
            die_with_parent=True,
        )

    def _wait_ready(self, servers: list[str], endpoint: str) -> None:
        """Until `servers` listen and the S3 API at `endpoint` answers a signed request (ListBuckets)."""
        import boto3
        from botocore.config import Config

        deadline = time.monotonic() + START_TIMEOUT_S
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            verify=self.ca_bundle,
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}, connect_timeout=2),
        )
        pending = list(servers)
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
