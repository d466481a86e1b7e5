"""Running the service: bootstrap and shutdown, settings, worker processes, readiness."""
