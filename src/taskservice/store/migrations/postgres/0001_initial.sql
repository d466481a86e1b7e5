-- The same schema as the SQLite store (version 1), in PostgreSQL types.
CREATE TABLE tasks (
    id          TEXT PRIMARY KEY,
    created_by  TEXT NOT NULL,
    assigned_to TEXT NOT NULL,
    status      INTEGER NOT NULL,
    priority    INTEGER NOT NULL,
    created_us  BIGINT NOT NULL,
    updated_us  BIGINT NOT NULL,
    due_key     BIGINT NOT NULL,
    body        BYTEA NOT NULL
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
);
CREATE INDEX task_labels_by_task ON task_labels (task_id);

-- The event log. `sequence` is not a bigserial: sequences from nextval() are handed out in call
-- order, not commit order, so a reader could see 7 before 6 commits. Instead every change bumps
-- the single event_log row as its last statement; the row lock it takes is held until commit, so
-- the next writer reads the committed head and numbers are assigned in commit order, with no gaps.
CREATE TABLE events (
    sequence     BIGINT PRIMARY KEY,
    event_type   INTEGER NOT NULL,
    task_id      TEXT NOT NULL,
    occurred_us  BIGINT NOT NULL,
    triggered_by TEXT NOT NULL,
    task         BYTEA NOT NULL,
    previous     BYTEA
);
CREATE INDEX events_by_time ON events (occurred_us);

-- head: the newest committed sequence; horizon: events up to here were pruned.
CREATE TABLE event_log (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    head    BIGINT NOT NULL,
    horizon BIGINT NOT NULL
);
INSERT INTO event_log VALUES (1, 0, 0);

CREATE TABLE idempotency_keys (
    created_by   TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    request_hash BYTEA NOT NULL,
    task_id      TEXT NOT NULL,
    created_us   BIGINT NOT NULL,
    response     BYTEA NOT NULL,
    PRIMARY KEY (created_by, request_id)
);
CREATE INDEX idempotency_keys_by_time ON idempotency_keys (created_us);

-- Key/value facts about this store: secrets shared by every replica.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
