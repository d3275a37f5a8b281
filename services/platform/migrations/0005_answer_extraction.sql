-- How a bot read an answer beyond the page basics: the finish signals that ended it, the
-- manifest roles it did without, whether the text was read by fallback and the bot's
-- confidence; and what the assistant's response stream said besides the text: the web searches
-- it ran (query fan-out) and the products it showed.
ALTER TABLE answers
    ADD COLUMN finish_signals   TEXT[]  NOT NULL DEFAULT '{}',
    ADD COLUMN missing_roles    TEXT[]  NOT NULL DEFAULT '{}',
    ADD COLUMN read_by_fallback BOOLEAN NOT NULL DEFAULT false,
    -- NULL: the bot did not say
    ADD COLUMN confidence       REAL,
    -- ["query", ...] in the order the assistant ran them
    ADD COLUMN search_queries   JSONB   NOT NULL DEFAULT '[]',
    -- [{"name", "url", "price", "merchant", "position"}] in the order shown
    ADD COLUMN products         JSONB   NOT NULL DEFAULT '[]';
