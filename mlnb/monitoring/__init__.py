"""Monitoring of a served model: drift of its served inputs and predictions, live metrics
from feedback (``mlnb monitor``; docs/monitoring.md)."""
