-- Webhooks: `spec` is the protobuf encoding of the Webhook's user-set fields (url, filters,
-- description, created_by, created_at); delivery state has columns of its own, so a delivery
-- worker's progress and a user's update never overwrite each other.
CREATE TABLE webhooks (
    id                  TEXT PRIMARY KEY,
    created_by          TEXT NOT NULL,
    creator_admin       INTEGER NOT NULL,
    spec                BLOB NOT NULL,
    secret              TEXT NOT NULL,
    previous_secret     TEXT NOT NULL DEFAULT '',
    previous_until_us   INTEGER NOT NULL DEFAULT 0,
    active              INTEGER NOT NULL,
    revision            INTEGER NOT NULL DEFAULT 1,
    delivered_sequence  INTEGER NOT NULL,
    last_error          TEXT NOT NULL DEFAULT '',
    failing_since_us    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX webhooks_by_creator ON webhooks (created_by, id);

-- Every delivery attempt, newest kept (the delivery worker prunes each webhook's oldest).
CREATE TABLE webhook_deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id   TEXT NOT NULL,
    sequence     INTEGER NOT NULL,
    attempt      INTEGER NOT NULL,
    http_status  INTEGER NOT NULL,
    error        TEXT NOT NULL,
    attempted_us INTEGER NOT NULL,
    duration_ms  INTEGER NOT NULL,
    success      INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
