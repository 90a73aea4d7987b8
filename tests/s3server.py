"""S3 server fixture (filled in by the S3 work)."""
