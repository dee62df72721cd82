"""Data access: the only package that talks to DynamoDB, S3 and Secrets Manager."""
