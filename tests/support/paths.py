"""Where things are: the repository root and the virtualenv's console scripts."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # imgpipe, dagster-daemon, dagster-webserver, dagster-celery
