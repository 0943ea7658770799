"""The only place the Dagster `Definitions` are built: everything in the `defs/` folder, found the dg way
(`[tool.dg]` in pyproject.toml). workspace.yaml, `dagster dev -m` and `dg check defs` load this.

Built at the defs folder rather than through `dg.load_from_defs_folder`, which also catalogues the
component types of every installed Dagster integration (it imports dagster-aws, dagster-celery, ...):
seconds more for each process that loads the code location, a run's included, for a catalogue this
project, which defines no components, does not use (docs/performance.md).
"""

from pathlib import Path

import dagster as dg

DEFS_FOLDER = Path(__file__).parent / "defs"


@dg.definitions
def defs() -> dg.Definitions:
    return dg.ComponentTree.for_project(path_within_project=DEFS_FOLDER).build_defs(DEFS_FOLDER)
