-- Issue 11: answers_prompt (prompt_id) is the leading column of answers_prompt_target (prompt_id,
-- assistant, plan, evaluation_id DESC, migration 0009), which serves every lookup by prompt and
-- the foreign key's checks as well. Each stored answer wrote both; now one.
DROP INDEX IF EXISTS answers_prompt;
