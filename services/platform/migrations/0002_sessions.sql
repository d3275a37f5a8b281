-- The assistant accounts bots log in with (SessionService), and the leases that lend them.

CREATE TABLE session_accounts (
    id               UUID        PRIMARY KEY,
    -- lowercase assistant id, e.g. 'chatgpt'
    assistant        TEXT        NOT NULL,
    -- the operator's spelling, e.g. 'Plus'
    plan             TEXT        NOT NULL,
    -- the plan as leases compare it: trimmed, lowercase
    plan_key         TEXT        NOT NULL,
    label            TEXT        NOT NULL DEFAULT '',
    -- the Playwright storage-state document exactly as the operator sent it (not encrypted yet)
    storage_state    TEXT        NOT NULL,
    -- bumped whenever storage_state is replaced: a lease of an older state cannot expire the new login
    state_version    BIGINT      NOT NULL DEFAULT 1,
    -- 'cooling' with a past cooldown_until counts as active
    status           TEXT        NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'cooling', 'expired')),
    cooldown_until   TIMESTAMPTZ,
    runs             BIGINT      NOT NULL DEFAULT 0,
    last_leased_at   TIMESTAMPTZ,
    -- the lease that holds the account, kept on the row itself so that a concurrent
    -- `SELECT ... FOR UPDATE SKIP LOCKED` re-checks it on the row version it locks
    lease_id         UUID,
    leased_until     TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX session_accounts_rotation
    ON session_accounts (assistant, plan_key, last_leased_at NULLS FIRST);

CREATE TABLE session_leases (
    id            UUID        PRIMARY KEY,
    account_id    UUID        NOT NULL REFERENCES session_accounts (id),
    bot_id        TEXT        NOT NULL,
    max_runs      INT         NOT NULL,
    -- the account's state_version the lease handed out
    state_version BIGINT      NOT NULL,
    leased_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,
    -- set once, by the return: a second return of the same lease is refused
    returned_at   TIMESTAMPTZ,
    outcome       TEXT        CHECK (outcome IN ('ok', 'expired', 'rate_limited')),
    runs          BIGINT,
    -- free text from the bot, for the operator
    detail        TEXT
);

CREATE INDEX session_leases_account ON session_leases (account_id);
