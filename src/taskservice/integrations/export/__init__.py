"""Broker export: every committed event to NATS JetStream or Redis Streams, in order, at least once."""
