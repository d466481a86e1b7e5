"""`taskservice bench`: the server measured against a do-nothing grpcio server in the same run.

Modules: `ceiling` (the yardstick server), `fill` (databases of N tasks, cached), `h2load`
(unary load from a compiled HTTP/2 client), `clients` (streaming scenarios), `scenarios` (the run)
and `report` (table, JSON, chart).
"""
