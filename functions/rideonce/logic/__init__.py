"""The domain: pure functions over the models, no I/O, unit-tested without AWS."""
