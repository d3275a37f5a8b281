-- The SHA-256 of the answer a bot handed in (everything its submit carries that ends in the
-- stored answer), set when the evaluation is marked submitted: a repeat of that submit (the bot
-- lost the reply) is taken again, any other answer is refused, also once the answer is stored.
-- NULL on evaluations submitted before it was recorded: their stored text is compared instead.
ALTER TABLE evaluations ADD COLUMN submitted_digest bytea;
