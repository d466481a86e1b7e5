"""`taskservice bench`: the server measured against a do-nothing grpcio server in the same run.

Modules: `ceiling` (the yardstick server), `fill` (databases of N tasks, cached), `h2load`
(unary load from a compiled HTTP/2 client), `clients` (streaming scenarios), `scale` (SQLite against
PostgreSQL replicas), `scenarios` (the run)
and `report` (table, JSON, chart).
"""

# The scenario groups `taskservice bench --only` selects (kept here, free of imports, for the CLI).
# "large" compares ListTasks at 1M tasks with the 1k-task pages, so it measures those too; "events"
# runs CreateTask with both exports and a webhook (docs/integrations.md) on a server of its own; "http"
# compares GetTask over REST and Connect on the HTTP port with gRPC GetTask on the same server.
# "matrix" times every list filter by every order (and more) at both sizes, in-process (bench/matrix.py).
GROUPS = ("list", "unary", "bulk", "watch", "large", "events", "http", "matrix")
# Groups run only when named with --only: "scale" needs PostgreSQL and starts a dozen servers.
EXTRA_GROUPS = ("scale",)
