-- Issue 11: autovacuum works through the tables every evaluation writes (prompts, evaluations,
-- answers) at a fifth of its default pace: it sleeps 20 ms (PostgreSQL's default before 12)
-- instead of 2 ms each time it has spent its cost limit, for its VACUUM and its ANALYZE of these
-- tables. At full pace, on the platform's own busy cores, a round of the three (0.6 s) stood
-- between waiting answers and the CPU: at 1,000 evaluations a second, answers on the
-- customer's stream p99 56–94 ms in the runs it came in, against 39–47 ms at this pace (the
-- round then takes 2.7 s). Dead row versions live longer in exchange: seconds, at these sizes.
-- docs/operations.md says how to put a table back to the server's own setting.
ALTER TABLE prompts SET (autovacuum_vacuum_cost_delay = 20);
ALTER TABLE evaluations SET (autovacuum_vacuum_cost_delay = 20);
ALTER TABLE answers SET (autovacuum_vacuum_cost_delay = 20);
