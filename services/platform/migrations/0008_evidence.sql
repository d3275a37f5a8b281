-- Evidence of failed bot attempts (SessionService ReportEvidence), kept by the platform so that
-- operators see it whatever host the bot ran on. Bounded by the sessions service: at most a
-- number of cases per account and overall, the oldest deleted as new ones arrive.

CREATE TABLE session_evidence (
    id               UUID        PRIMARY KEY,
    -- the account of the lease the bot held; NULL when it held none
    account_id       UUID        REFERENCES session_accounts (id) ON DELETE CASCADE,
    -- lowercase assistant id
    assistant        TEXT        NOT NULL,
    bot_id           TEXT        NOT NULL,
    -- the bot principal that reported it
    principal        TEXT        NOT NULL,
    evaluation_id    BIGINT      NOT NULL,
    attempt          INT         NOT NULL,
    -- failure class token: logged-out, challenge, rate-limited, selector-missing, timeout,
    -- empty-answer, assistant-error, browser
    class            TEXT        NOT NULL,
    error            TEXT        NOT NULL,
    url              TEXT        NOT NULL,
    title            TEXT        NOT NULL,
    manifest_version TEXT        NOT NULL,
    -- the bot's clock
    captured_at      TIMESTAMPTZ NOT NULL,
    -- the database's clock: what the bounds and listings order by
    reported_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- PNG
    screenshot       BYTEA,
    html             TEXT        NOT NULL DEFAULT ''
);

CREATE INDEX session_evidence_account ON session_evidence (account_id, reported_at DESC);
CREATE INDEX session_evidence_reported ON session_evidence (reported_at);

-- Failed attempts reported on each account, whether their evidence is still kept or not.
ALTER TABLE session_accounts ADD COLUMN failures BIGINT NOT NULL DEFAULT 0;
