"""The consumer designs compared under the same faults: rideonce's own beside the two usual ones."""

RIDEONCE = "rideonce"
CHECK_THEN_WRITE = "check-then-write"
POWERTOOLS = "powertools"
DESIGNS = (RIDEONCE, CHECK_THEN_WRITE, POWERTOOLS)
