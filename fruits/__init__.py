"""Operator tools around the deployed pipeline: the ``fruits`` CLI (``fruits.cli``) and the local runner
(``fruits.local``: moto server, local Lambda event source mapping, local EMR Serverless runner, demo).

Nothing here ships to AWS: the Lambda asset is the whole ``lambdas`` package, the EMR job is ``spark_jobs``.
"""
