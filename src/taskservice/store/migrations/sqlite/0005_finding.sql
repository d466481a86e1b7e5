-- Finding tasks (CONTRACT §5.2): the fields a filter reads get columns of their own, full-text
-- search gets an FTS5 index, and task history an index on the event log.
-- Rows written before this migration carry version 0 until the store fills these columns in from
-- their body at start-up (store/sql.py: BACKFILL), so the columns are never read stale.
ALTER TABLE tasks ADD COLUMN title TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE tasks ADD COLUMN version INTEGER NOT NULL DEFAULT 0;

-- Flat lists: a filter on a column people filter by, in any order, is one index range read in
-- that order. Priority is left to the order's own index (four values: a page reads a few
-- pages' worth of rows), and labels to task_labels probed per row in order (see docs/performance.md).
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

-- Full text over title and description, stored once (external content: the tasks table) and kept
-- current by triggers, so it changes in the transaction that changes the task. It is keyed by the
-- tasks table's rowid: after a VACUUM (which may renumber rowids) run
-- INSERT INTO tasks_fts(tasks_fts) VALUES ('rebuild').
CREATE VIRTUAL TABLE tasks_fts USING fts5(title, description, content='tasks', content_rowid='rowid');
INSERT INTO tasks_fts(tasks_fts) VALUES ('rebuild');
CREATE TRIGGER tasks_fts_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO tasks_fts(rowid, title, description) VALUES (new.rowid, new.title, new.description);
END;
CREATE TRIGGER tasks_fts_delete AFTER DELETE ON tasks BEGIN
    INSERT INTO tasks_fts(tasks_fts, rowid, title, description) VALUES ('delete', old.rowid, old.title, old.description);
END;
CREATE TRIGGER tasks_fts_update AFTER UPDATE OF title, description ON tasks
    WHEN old.title IS NOT new.title OR old.description IS NOT new.description BEGIN
    INSERT INTO tasks_fts(tasks_fts, rowid, title, description) VALUES ('delete', old.rowid, old.title, old.description);
    INSERT INTO tasks_fts(rowid, title, description) VALUES (new.rowid, new.title, new.description);
END;

-- Task history (ListTaskEvents) is the event log itself: pruning keeps the events of tasks that
-- still exist (a task's history lasts as long as the task), so this index reads one task's events.
CREATE INDEX events_by_task ON events (task_id, sequence);
