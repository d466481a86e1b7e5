"""Transports: translate wire requests into service calls and domain errors into wire statuses."""
