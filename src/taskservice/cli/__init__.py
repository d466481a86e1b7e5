"""Command-line entry points: `taskservice` (the server) and `taskctl` (the client)."""
