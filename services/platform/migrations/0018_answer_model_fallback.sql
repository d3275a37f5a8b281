-- The site answered with another model than the account's plan answers with, because the account
-- had used up the plan's limit for that model (chatgpt.com's "You've hit the Plus plan limit for
-- GPT-5. Responses will use another model until your limit resets ..."): the stored `model` is
-- the one that answered, when the page said. Adding a column with a constant default rewrites
-- nothing (PostgreSQL 11+). No statement filters on it: ANALYZE leaves it alone, as it does the
-- rest of what the bot reported about its run (0011, 0017).
ALTER TABLE answers ADD COLUMN model_fallback BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE answers ALTER COLUMN model_fallback SET STATISTICS 0;
