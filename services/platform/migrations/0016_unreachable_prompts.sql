-- Prompts the HNSW index does not find by their own embedding. A graph search starts at one entry
-- point and follows each element's links; as a dense cluster of prompts grows (templated prompts:
-- "which CRM fits team 1?", "... team 2?"), pgvector keeps each element's nearest links and drops
-- the far ones, so a prompt near nothing else, or at a cluster's edge, can lose every link that led
-- to it. The answers service's audit asks the index for each prompt's own embedding and lists
-- here those it does not return; the similarity search scans these exactly beside the index
-- (docs/matching.md, "Prompts the index cannot reach").
CREATE TABLE prompts_unreachable (
    prompt_id bigint PRIMARY KEY REFERENCES prompts (id) ON DELETE CASCADE,
    found_at timestamptz NOT NULL DEFAULT now()
);
