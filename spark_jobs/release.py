"""The one place that pairs the EMR Serverless release with the Spark version used locally.

Source: AWS EMR Serverless User Guide, "EMR Serverless 7.9.0" release page — Apache Spark 3.5.5.
`pyproject.toml` pins ``pyspark==3.5.5`` to match; a test asserts the two agree.
"""

EMR_RELEASE_LABEL = "emr-7.9.0"
SPARK_VERSION = "3.5.5"
# Python used by the job inside the custom EMR Serverless image (TensorFlow 2.21 needs >= 3.10).
JOB_PYTHON = "/usr/bin/python3.11"
