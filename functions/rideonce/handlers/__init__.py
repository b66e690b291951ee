"""Lambda entry points: thin, they parse the event, call the service or logic, and map errors."""
