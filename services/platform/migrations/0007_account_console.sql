-- What the session console shows and changes: accounts taken out of rotation by an operator,
-- why an account cools down, rate-limit counts, when its session state was last stored, and a
-- notification on every change so that live account lists on any replica hear of it.

ALTER TABLE session_accounts
    -- set by an operator (DisableAccount); a disabled account is never lent, whatever its status
    ADD COLUMN disabled           BOOLEAN     NOT NULL DEFAULT false,
    -- why the account cools down: 'rate_limited' or 'challenged'; NULL when it does not
    ADD COLUMN cooldown_kind      TEXT        CHECK (cooldown_kind IN ('rate_limited', 'challenged')),
    -- the bot's words when it returned the lease that started the cool-down
    ADD COLUMN cooldown_reason    TEXT        NOT NULL DEFAULT '',
    ADD COLUMN rate_limits        BIGINT      NOT NULL DEFAULT 0,
    -- when the session state was stored: created, or replaced by a new login
    ADD COLUMN state_refreshed_at TIMESTAMPTZ NOT NULL DEFAULT now();

UPDATE session_accounts SET state_refreshed_at = updated_at;
UPDATE session_accounts SET cooldown_kind = 'rate_limited' WHERE status = 'cooling';

-- Deleting an account deletes its lease history.
ALTER TABLE session_leases
    DROP CONSTRAINT session_leases_account_id_fkey,
    ADD CONSTRAINT session_leases_account_id_fkey
        FOREIGN KEY (account_id) REFERENCES session_accounts (id) ON DELETE CASCADE;

-- An account's lease history and its latest lease, newest first.
CREATE INDEX session_leases_account_leased ON session_leases (account_id, leased_at DESC);

-- Live account lists (WatchAccounts) LISTEN on this channel; the payload is not used.
CREATE FUNCTION session_accounts_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('aap_session_accounts', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER session_accounts_changed
    AFTER INSERT OR UPDATE OR DELETE ON session_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION session_accounts_notify();

CREATE TRIGGER session_leases_changed
    AFTER INSERT OR UPDATE OR DELETE ON session_leases
    FOR EACH STATEMENT EXECUTE FUNCTION session_accounts_notify();
