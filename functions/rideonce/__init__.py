"""rideonce: a car-ride service in which every ride change takes effect downstream exactly once."""
