-- Projects with members, subtasks and the trash (CONTRACT §5.1). A task's project, parent and the
-- time it went to the trash become columns, so lists filter on them with an index like the others.
ALTER TABLE tasks ADD COLUMN project_id TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN parent_id TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN deleted_us INTEGER NOT NULL DEFAULT 0;
CREATE INDEX tasks_by_project ON tasks (project_id, created_us, id);
CREATE INDEX tasks_by_parent ON tasks (parent_id, created_us, id);
-- A user's personal tasks (project_id = '') for the visibility rule: by creator within no project,
-- not all personal tasks of everyone.
CREATE INDEX tasks_personal_by_creator ON tasks (created_by, project_id, created_us, id);
CREATE INDEX tasks_in_trash ON tasks (deleted_us) WHERE deleted_us > 0;

-- A project is stored as its protobuf encoding, members included; project_members repeats the
-- members so "my projects" and "this project's members" are index lookups.
CREATE TABLE projects (
    id         TEXT PRIMARY KEY,
    created_us INTEGER NOT NULL,
    body       BLOB NOT NULL
);
CREATE TABLE project_members (
    user_id    TEXT NOT NULL,
    project_id TEXT NOT NULL,
    role       INTEGER NOT NULL,
    PRIMARY KEY (user_id, project_id)
) WITHOUT ROWID;
CREATE INDEX project_members_by_project ON project_members (project_id);

-- Project changes are events too (event_type 100, never sent to task watchers): replicas and
-- watches learn of membership changes in sequence order. This index finds them without a scan.
CREATE INDEX events_of_projects ON events (sequence) WHERE event_type = 100;
