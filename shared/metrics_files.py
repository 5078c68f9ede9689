"""Where a process's metrics are counted: the API's and the workers'
processes count in files of their own in METRICS_DIR (prometheus_client's
multiprocess mode), which a /metrics sums; see shared/metrics.py."""

from __future__ import annotations

import os

from shared.settings import get_settings

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"


def count_in_files() -> None:
    """Make this process, and those it starts, count in METRICS_DIR's files.
    Call before shared.metrics is imported; children inherit it."""
    folder = get_settings().metrics_folder
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROCESS] = str(folder)
