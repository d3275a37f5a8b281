-- What a bot captured beyond the text: the kind of result, the page's HTML, the model, whether
-- the assistant searched the web, timings, and the adapter manifest that read the page.
ALTER TABLE answers
    ADD COLUMN kind                TEXT    NOT NULL DEFAULT 'text' CHECK (kind IN ('text', 'no_overview')),
    ADD COLUMN response_html       TEXT    NOT NULL DEFAULT '',
    ADD COLUMN model               TEXT    NOT NULL DEFAULT '',
    -- NULL: the page did not say
    ADD COLUMN web_search          BOOLEAN,
    ADD COLUMN ttft_ms             BIGINT,
    ADD COLUMN total_ms            BIGINT,
    ADD COLUMN adapter_version     TEXT    NOT NULL DEFAULT '',
    ADD COLUMN adapter_fingerprint TEXT    NOT NULL DEFAULT '';
