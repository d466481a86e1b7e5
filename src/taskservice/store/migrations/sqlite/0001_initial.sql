-- Tasks are stored as their protobuf encoding (`body`) plus the columns that filters and sort
-- orders use; every sort order has an index ending in id, so keyset pages are range scans.
CREATE TABLE tasks (
    id          TEXT PRIMARY KEY,
    created_by  TEXT NOT NULL,
    assigned_to TEXT NOT NULL,
    status      INTEGER NOT NULL,
    priority    INTEGER NOT NULL,
    created_us  INTEGER NOT NULL,
    updated_us  INTEGER NOT NULL,
    due_key     INTEGER NOT NULL,
    body        BLOB NOT NULL
);
CREATE INDEX tasks_by_created ON tasks (created_us, id);
CREATE INDEX tasks_by_updated ON tasks (updated_us, id);
CREATE INDEX tasks_by_priority ON tasks (priority, id);
CREATE INDEX tasks_by_due ON tasks (due_key, id);
CREATE INDEX tasks_by_status ON tasks (status, created_us, id);
CREATE INDEX tasks_by_creator ON tasks (created_by, created_us, id);
CREATE INDEX tasks_by_assignee ON tasks (assigned_to, created_us, id);

CREATE TABLE task_labels (
    label   TEXT NOT NULL,
    task_id TEXT NOT NULL,
    PRIMARY KEY (label, task_id)
) WITHOUT ROWID;
CREATE INDEX task_labels_by_task ON task_labels (task_id);

-- The event log. AUTOINCREMENT: a sequence is never reused, even after the newest rows are pruned.
CREATE TABLE events (
    sequence     INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type   INTEGER NOT NULL,
    task_id      TEXT NOT NULL,
    occurred_us  INTEGER NOT NULL,
    triggered_by TEXT NOT NULL,
    task         BLOB NOT NULL,
    previous     BLOB
);
CREATE INDEX events_by_time ON events (occurred_us);

CREATE TABLE idempotency_keys (
    created_by   TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    task_id      TEXT NOT NULL,
    created_us   INTEGER NOT NULL,
    response     BLOB NOT NULL,
    PRIMARY KEY (created_by, request_id)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_time ON idempotency_keys (created_us);

-- Key/value facts about this store: shared secrets and the event-log horizon.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
