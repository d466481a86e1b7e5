-- Webhooks: `spec` is the protobuf encoding of the Webhook's user-set fields (url, filters,
-- description, created_by, created_at); delivery state has columns of its own, so a delivery
-- worker's progress and a user's update never overwrite each other.
CREATE TABLE webhooks (
    id                  TEXT PRIMARY KEY,
    created_by          TEXT NOT NULL,
    creator_admin       BOOLEAN NOT NULL,
    spec                BYTEA NOT NULL,
    secret              TEXT NOT NULL,
    previous_secret     TEXT NOT NULL DEFAULT '',
    previous_until_us   BIGINT NOT NULL DEFAULT 0,
    active              BOOLEAN NOT NULL,
    revision            BIGINT NOT NULL DEFAULT 1,
    delivered_sequence  BIGINT NOT NULL,
    last_error          TEXT NOT NULL DEFAULT '',
    failing_since_us    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX webhooks_by_creator ON webhooks (created_by, id);

-- Every delivery attempt, newest kept (the delivery worker prunes each webhook's oldest).
CREATE TABLE webhook_deliveries (
    id           BIGSERIAL PRIMARY KEY,
    webhook_id   TEXT NOT NULL,
    sequence     BIGINT NOT NULL,
    attempt      INTEGER NOT NULL,
    http_status  INTEGER NOT NULL,
    error        TEXT NOT NULL,
    attempted_us BIGINT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    success      BOOLEAN NOT NULL
);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
