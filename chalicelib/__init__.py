"""sparkgate: a serverless gateway to Spark (everything but the Chalice app object)."""
