-- Prompts, their evaluations (one per asked assistant and plan) and the answers bots captured.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE prompts (
    id          BIGSERIAL PRIMARY KEY,
    text        TEXT        NOT NULL,
    -- sha256 of the normalised text (NFKC, trimmed, white space collapsed, case-folded)
    text_hash   BYTEA       NOT NULL UNIQUE,
    embedding   vector(384) NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX prompts_embedding_hnsw ON prompts
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);

CREATE TABLE evaluations (
    id              BIGSERIAL PRIMARY KEY,
    prompt_id       BIGINT      NOT NULL REFERENCES prompts (id),
    assistant       TEXT        NOT NULL,
    -- the plan asked for, or 'any'
    plan            TEXT        NOT NULL,
    -- pending → queued → claimed → submitted → answered, or failed
    status          TEXT        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'queued', 'claimed', 'submitted', 'answered', 'failed')),
    attempts        INT         NOT NULL DEFAULT 0,
    max_attempts    INT         NOT NULL,
    -- the JetStream reply subject that acks, extends or ends the delivery a bot holds
    ack_subject     TEXT,
    claimed_by      TEXT,
    claimed_at      TIMESTAMPTZ,
    claim_expires_at TIMESTAMPTZ,
    failure_reason  TEXT,
    trace_context   JSONB       NOT NULL DEFAULT '{}',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- At most one live evaluation per prompt and target: concurrent Asks of one prompt share it.
CREATE UNIQUE INDEX evaluations_one_live_per_target ON evaluations (prompt_id, assistant, plan)
    WHERE status IN ('pending', 'queued', 'claimed', 'submitted');
CREATE INDEX evaluations_prompt ON evaluations (prompt_id);
CREATE INDEX evaluations_pending ON evaluations (id) WHERE status = 'pending';
CREATE INDEX evaluations_claim_expiry ON evaluations (claim_expires_at) WHERE status = 'claimed';

CREATE TABLE answers (
    id                BIGSERIAL PRIMARY KEY,
    -- one answer per evaluation: a redelivered result changes nothing
    evaluation_id     BIGINT      NOT NULL UNIQUE REFERENCES evaluations (id),
    prompt_id         BIGINT      NOT NULL REFERENCES prompts (id),
    assistant         TEXT        NOT NULL,
    plan              TEXT        NOT NULL,
    response_text     TEXT        NOT NULL,
    response_markdown TEXT        NOT NULL,
    -- [{"url", "title", "domain", "position"}], in the answer's order
    citations         JSONB       NOT NULL,
    captured_at       TIMESTAMPTZ NOT NULL,
    bot_id            TEXT        NOT NULL DEFAULT '',
    lease_id          TEXT        NOT NULL DEFAULT '',
    stored_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX answers_prompt ON answers (prompt_id);
