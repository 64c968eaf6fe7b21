"""Local (embedded default) mode: moto server + local Spark standing in for S3, SQS, DynamoDB, EMR Serverless."""
