"""One local SparkSession for every Spark test (it takes about 16 s to start)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """A local session set up as the jobs set theirs up (``databricks_jobs.main.session``)."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.fail("PySpark needs Java 17 or later: install a JDK (apt-get install openjdk-17-jre-headless)")
    # Python workers must run this interpreter and import this checkout's packages.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    from databricks_jobs.main import session

    spark = session(local=True)
    # Small splits, so one test file is read in several: the numbering across splits is tested.
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(16 * 1024))
    spark.conf.set("spark.sql.files.openCostInBytes", "0")
    spark.conf.set("spark.sql.shuffle.partitions", "4")
    yield spark
    spark.stop()
