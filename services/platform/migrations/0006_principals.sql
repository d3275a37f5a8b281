-- Who may call the platform: named principals, each with one role, and their bearer tokens,
-- kept only as SHA-256 hashes. Claims and session leases remember the principal that holds
-- them, so only that principal can submit, release, extend or return them.
CREATE TABLE principals (
    name        TEXT        PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    role        TEXT        NOT NULL CHECK (role IN ('customer', 'bot', 'operator')),
    -- bots: the assistant ids the principal may serve; empty: every assistant
    assistants  TEXT[]      NOT NULL DEFAULT '{}',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    -- 'tok_' and the first 12 hex digits of the hash: safe to show, log and revoke by
    id          TEXT        PRIMARY KEY,
    principal   TEXT        NOT NULL REFERENCES principals (name),
    -- SHA-256 of the token; the token itself is never stored
    token_hash  BYTEA       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    label       TEXT        NOT NULL DEFAULT '',
    -- 'admin': made by AdminService.CreateToken; 'config': an AAP_*_TOKENS setting, loaded at start
    source      TEXT        NOT NULL CHECK (source IN ('admin', 'config')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by  TEXT        NOT NULL DEFAULT '',
    -- set once; a revoked configured token stays revoked across restarts
    revoked_at  TIMESTAMPTZ,
    revoked_by  TEXT        NOT NULL DEFAULT ''
);

CREATE INDEX api_tokens_principal ON api_tokens (principal);

-- The principal whose bot holds the claim (claimed_by keeps the bot id). Claims taken before
-- this migration have none: nobody can submit them, and they lapse and are delivered again.
ALTER TABLE evaluations ADD COLUMN claimed_principal TEXT;

-- The principal whose bot holds the lease; only it may return the lease.
ALTER TABLE session_leases ADD COLUMN principal TEXT;
