-- Issue 11: ANALYZE gathers no statistics on the columns of an answer that no statement filters,
-- joins or sorts on (the texts, the page, the citations, what the bot reported about its run).
-- Statements find answers by id, evaluation, prompt, assistant and plan, and join leases on
-- lease_id: those keep theirs. Under 1,000 evaluations a second, autovacuum's ANALYZE of
-- answers (26,000 rows) took 0.24 s of CPU, 0.55 s in all, mostly sorting and comparing texts
-- and JSON nobody asks the planner about, and every answer waiting meanwhile came late; without
-- them, ANALYZE answers takes 55 ms instead of 255 (docs/performance.md).
ALTER TABLE answers
    ALTER COLUMN response_text SET STATISTICS 0,
    ALTER COLUMN response_markdown SET STATISTICS 0,
    ALTER COLUMN response_html SET STATISTICS 0,
    ALTER COLUMN citations SET STATISTICS 0,
    ALTER COLUMN captured_at SET STATISTICS 0,
    ALTER COLUMN stored_at SET STATISTICS 0,
    ALTER COLUMN bot_id SET STATISTICS 0,
    ALTER COLUMN kind SET STATISTICS 0,
    ALTER COLUMN model SET STATISTICS 0,
    ALTER COLUMN web_search SET STATISTICS 0,
    ALTER COLUMN ttft_ms SET STATISTICS 0,
    ALTER COLUMN total_ms SET STATISTICS 0,
    ALTER COLUMN adapter_version SET STATISTICS 0,
    ALTER COLUMN adapter_fingerprint SET STATISTICS 0,
    ALTER COLUMN finish_signals SET STATISTICS 0,
    ALTER COLUMN missing_roles SET STATISTICS 0,
    ALTER COLUMN read_by_fallback SET STATISTICS 0,
    ALTER COLUMN confidence SET STATISTICS 0,
    ALTER COLUMN search_queries SET STATISTICS 0,
    ALTER COLUMN products SET STATISTICS 0;
