-- The assistant stopped the answer at its own length limit and offered to go on (claude.ai's
-- "This response paused because Claude reached its max length for a message", a chatgpt.com
-- finish of type max_tokens): the stored text is all the page showed, not all the assistant
-- would have said (docs/bots.md, "Answers cut short"). Adding a column with a constant default
-- rewrites nothing (PostgreSQL 11+). No statement filters on it: ANALYZE leaves it alone, as it
-- does the rest of what the bot reported about its run (0011).
ALTER TABLE answers ADD COLUMN cut_short BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE answers ALTER COLUMN cut_short SET STATISTICS 0;
