"""The only place the Dagster `Definitions` are built: everything in the `defs/` folder, loaded the dg
way (`[tool.dg]` in pyproject.toml). workspace.yaml, `dagster dev -m` and `dg check defs` load this."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
