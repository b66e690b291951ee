"""Data access: every boto3 call lives here, behind small classes that are handed their client."""
