"""Observability: metrics (Prometheus), structured logs and trace-context propagation."""
