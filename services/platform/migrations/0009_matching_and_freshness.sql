-- Issue 12: prompts hashed in their canonical form (amounts spelled one way), answers kept as
-- history and refreshed, and the operator's refresh schedules.

-- 1: hash of the normalised text; 2: hash of the canonical text (aap_answers::normalize::
-- canonical). Rows at 1 are rehashed by the answers service at start.
ALTER TABLE prompts ADD COLUMN hash_version SMALLINT NOT NULL DEFAULT 1;
ALTER TABLE prompts ALTER COLUMN hash_version SET DEFAULT 2;

-- Answers of one prompt and target, newest first (History, and the current answer).
CREATE INDEX answers_prompt_target ON answers (prompt_id, assistant, plan, evaluation_id DESC);

-- Prompts an operator has asked to keep fresh: every `every_seconds`, each prompt of the set
-- gets a refresh evaluation for each target (unless one is live).
CREATE TABLE refresh_schedules (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT        NOT NULL UNIQUE,
    prompt_ids    BIGINT[]    NOT NULL,
    -- [{"assistant", "plan"}]; empty: every assistant on any plan
    targets       JSONB       NOT NULL DEFAULT '[]',
    every_seconds BIGINT      NOT NULL CHECK (every_seconds >= 60),
    next_run_at   TIMESTAMPTZ NOT NULL,
    last_run_at   TIMESTAMPTZ,
    created_by    TEXT        NOT NULL DEFAULT '',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX refresh_schedules_due ON refresh_schedules (next_run_at);
