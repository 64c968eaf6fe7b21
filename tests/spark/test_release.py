"""The EMR release and the local pyspark must agree (one place: spark_jobs/release.py)."""

import pyspark

from spark_jobs import release


def test_spark_version_matches_installed_pyspark() -> None:
    # GIVEN the Spark version paired with the EMR Serverless release
    # WHEN compared with the pyspark used locally and in tests
    # THEN they are the same version
    assert pyspark.__version__ == release.SPARK_VERSION
    assert release.EMR_RELEASE_LABEL.startswith("emr-")
