"""Observability: Prometheus metrics (`metrics`, `db_gauges`), OpenTelemetry traces (`tracing`) and
structured logs (`logs`); docs/observability.md says what each records and how to turn it on."""
