"""What operators see: metrics, per-call observation, the access log, tracing, loop metrics."""
