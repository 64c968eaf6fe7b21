"""Exact incremental PCA: sufficient statistics (``stats``), their sources (``aggregate``, ``table_stats``),
the versions under ``pca/<model_id>/`` (``versions``) and the projection on a version (``projection``)."""
