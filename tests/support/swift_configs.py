"""The text tests/support/swift.py writes for a test Swift: swift.conf, the servers' configs, the ring
build script, and a middleware that makes a proxy refuse checksums the way some S3-compatible stores do.
"""

SWIFT_CONF = """[swift-hash]
swift_hash_path_prefix = imgpipe-tests
swift_hash_path_suffix = imgpipe-tests

[storage-policy:0]
name = default
default = yes
"""

# Backends: one process each (workers = 0: no forking; eventlet serves requests concurrently), storage
# in the server's own directory, no mount check (a plain directory, not a mounted disk).
BACKEND_CONF = """[DEFAULT]
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
PROXY_CONF = """[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
swift_dir = {dir}
cert_file = {dir}/cert.pem
key_file = {dir}/key.pem
log_level = WARNING

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging {refuse}listing_formats s3api tempauth copy slo
    dlo proxy-logging proxy-server

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
{refuse_filter}"""

# A second proxy (same backends) with REFUSE_CHECKSUMS first in its pipeline: `{refuse}` and
# `{refuse_filter}` of PROXY_CONF. The module is written beside the configs and found on PYTHONPATH.
REFUSE_PIPELINE = "refuse_checksums "
REFUSE_FILTER = """
[filter:refuse_checksums]
paste.filter_factory = imgpipe_refuse_checksums:filter_factory
"""

# The three rings, one device each, built in one process (swift-ring-builder's create/add/rebalance
# through its library: nine CLI runs would each pay Swift's import time).
BUILD_RINGS = """
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


# Some S3-compatible stores implement neither the x-amz-checksum-* headers nor aws-chunked uploads that
# boto3 >= 1.36 sends by default, and answer such an upload as AWS answers a header it does not
# implement: 501 NotImplemented. This emulates one on uploads only (PutObject, UploadPart,
# CreateMultipartUpload): DeleteObjects carries a CRC32 in both checksum modes, so refusing it there
# would make the store unusable with any boto3 setting (docs/storage.md).
REFUSE_CHECKSUMS = """
def filter_factory(global_conf, **local_conf):
    return lambda app: RefuseChecksums(app)


class RefuseChecksums:
    def __init__(self, app):
        self.app = app

    def __call__(self, env, start_response):
        method = env["REQUEST_METHOD"]
        params = [p.split("=")[0] for p in env.get("QUERY_STRING", "").split("&")]
        upload = method == "PUT" or (method == "POST" and "uploads" in params)
        headers = [k[5:].lower().replace("_", "-") for k in env if k.startswith("HTTP_")]
        named = ("x-amz-trailer", "x-amz-sdk-checksum-algorithm")
        found = [h for h in headers if h.startswith("x-amz-checksum-") or h in named]
        if env.get("HTTP_X_AMZ_CONTENT_SHA256", "").startswith("STREAMING-"):
            found.append("x-amz-content-sha256")
        if not (upload and found):
            return self.app(env, start_response)
        while env["wsgi.input"].read(65536):  # read the body: the client gets this answer, not a reset
            pass
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>A header you '
            'provided implies functionality that is not implemented: ' + sorted(found)[0] + '</Message></Error>'
        ).encode()
        start_response("501 Not Implemented", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
        return [body]
"""
