-- Finding tasks (CONTRACT §5.2), as in the SQLite store's migration 5: filter columns, indexes
-- for flat lists, full-text search (a generated tsvector with a GIN index, so it changes in the
-- row's own transaction) and an index for task history. Rows written before it are filled in from
-- their body at start-up (store/sql.py: BACKFILL).
ALTER TABLE tasks ADD COLUMN title TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN metadata JSONB NOT NULL DEFAULT '{}';
ALTER TABLE tasks ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', title || ' ' || description)) STORED;
CREATE INDEX tasks_search ON tasks USING gin (search);

CREATE INDEX tasks_by_status_updated ON tasks (status, updated_us, id);
CREATE INDEX tasks_by_status_priority ON tasks (status, priority, id);
CREATE INDEX tasks_by_status_due ON tasks (status, due_key, id);
CREATE INDEX tasks_by_assignee_updated ON tasks (assigned_to, updated_us, id);
CREATE INDEX tasks_by_assignee_priority ON tasks (assigned_to, priority, id);
CREATE INDEX tasks_by_assignee_due ON tasks (assigned_to, due_key, id);
CREATE INDEX tasks_personal_by_creator_updated ON tasks (created_by, project_id, updated_us, id);
CREATE INDEX tasks_personal_by_creator_priority ON tasks (created_by, project_id, priority, id);
CREATE INDEX tasks_personal_by_creator_due ON tasks (created_by, project_id, due_key, id);
CREATE INDEX tasks_by_project_updated ON tasks (project_id, updated_us, id);
CREATE INDEX tasks_by_project_priority ON tasks (project_id, priority, id);
CREATE INDEX tasks_by_project_due ON tasks (project_id, due_key, id);

-- Task history (ListTaskEvents) is the event log itself: pruning keeps the events of tasks that
-- still exist (a task's history lasts as long as the task), so this index reads one task's events.
CREATE INDEX events_by_task ON events (task_id, sequence);
