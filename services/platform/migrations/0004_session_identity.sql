-- Session state encrypted at rest, a proxy and a user agent per account, and bot-challenge marks.
--
-- Session states and proxy URLs are sealed by the sessions service (AES-256-GCM, key outside the
-- database: AAP_SESSION_KEY), so this migration cannot encrypt the existing rows itself: it makes
-- the plain-text column nullable, and the service seals every row still holding plain text as it
-- starts (SessionDirectory::seal_plaintext_rows), leaving storage_state NULL.
ALTER TABLE session_accounts
    ALTER COLUMN storage_state DROP NOT NULL,
    -- version | key id | nonce | ciphertext + tag (see services/sessions/src/crypto.rs)
    ADD COLUMN storage_state_sealed BYTEA,
    -- the proxy URL, sealed like the state; NULL: no proxy
    ADD COLUMN proxy_sealed         BYTEA,
    -- the proxy as operators see it (scheme://host:port), '' without one
    ADD COLUMN proxy_display        TEXT        NOT NULL DEFAULT '',
    -- '' lets the bot derive one from the account id
    ADD COLUMN user_agent           TEXT        NOT NULL DEFAULT '',
    ADD COLUMN challenges           BIGINT      NOT NULL DEFAULT 0,
    ADD COLUMN last_challenged_at   TIMESTAMPTZ,
    -- challenges since the current proxy was set (reset when it changes)
    ADD COLUMN proxy_challenges     BIGINT      NOT NULL DEFAULT 0,
    ADD CONSTRAINT session_accounts_state_present
        CHECK (storage_state IS NOT NULL OR storage_state_sealed IS NOT NULL);

ALTER TABLE session_leases
    DROP CONSTRAINT session_leases_outcome_check,
    ADD CONSTRAINT session_leases_outcome_check
        CHECK (outcome IN ('ok', 'expired', 'rate_limited', 'challenged'));
