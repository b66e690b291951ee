"""Use cases: the order of reads, domain decisions and writes for one request or one event."""
