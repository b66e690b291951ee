"""Logger and Metrics, built once and shared by every handler.

The metric namespace is the project's, fixed here; the service name comes from POWERTOOLS_SERVICE_NAME.
"""

from aws_lambda_powertools import Logger, Metrics

METRIC_NAMESPACE = "rideonce"

logger = Logger()
metrics = Metrics(namespace=METRIC_NAMESPACE)
