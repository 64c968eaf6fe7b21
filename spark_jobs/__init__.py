"""EMR Serverless Spark job: featurize a batch of new images with ResNet50, refit exact PCA, append Parquet."""
