"""One pydantic v2 definition of each model the services exchange or store."""
