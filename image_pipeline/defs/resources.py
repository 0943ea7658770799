"""The one resource the request assets, sensors and schedules need: the domain's `RequestContext`.

Configuration is not mirrored here: the resource reads `Settings` (IMGPIPE_* and `.env`) in the
process that runs the step and wires it with `build_context`, the same path the API and the CLI
take. So no password, key or webhook secret ever appears as resource config in the UI, and a secret
set only in `.env` signs webhooks in every process that sends one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg

from image_pipeline.domain.settings import Settings, get_settings

if TYPE_CHECKING:  # the domain (SQLAlchemy ORM, httpx, ...) loads when a step first needs it
    from image_pipeline.domain.request.context import RequestContext


class ImagePipelineResource:
    """App database, object storage (S3 or a local directory), status cache, fetch and codec limits, as
    `Settings` gives them in this process (`IMGPIPE_*`, `.env`); see the README's configuration table.

    A plain object handed to Dagster as it is (assets declare `dg.ResourceParam[ImagePipelineResource]`):
    it has no Dagster config of its own because `Settings` is the configuration.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        self._ctx: RequestContext | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = get_settings()
        return self._settings

    def context(self) -> RequestContext:
        """Built once per process and configuration; its heavy clients come from per-process caches."""
        if self._ctx is None:
            from image_pipeline.domain.services import build_context

            self._ctx = build_context(self.settings)
        return self._ctx


PipelineParam = dg.ResourceParam[ImagePipelineResource]


def build_resources(settings: Settings | None = None) -> dict[str, Any]:
    """The resources of the code location: the pipeline, plus the S3 IO manager when steps run in other
    processes or on other machines (they hand each other their small outputs through S3)."""
    s = settings or get_settings()
    pipeline = ImagePipelineResource(settings)
    resources: dict[str, Any] = {"pipeline": pipeline}
    if s.executor != "in_process" and s.s3_bucket:
        from dagster_aws.s3 import S3PickleIOManager

        from image_pipeline.dagster_plugins.s3_io import SharedClientS3Resource

        resources["io_manager"] = S3PickleIOManager(
            s3_resource=SharedClientS3Resource(
                endpoint_url=s.s3_endpoint_url, region_name=s.s3_region, checksum=s.s3_checksum
            ),
            s3_bucket=s.s3_bucket,
            s3_prefix="dagster-io",
        )
    return resources


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(resources=build_resources())
