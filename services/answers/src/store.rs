//! All SQL over `prompts`: exact lookup by hash, neighbours by cosine similarity.

use pgvector::Vector;
use sqlx::{PgConnection, PgPool};

/// A stored prompt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PromptRow {
    pub id: i64,
    pub text: String,
}

/// A stored prompt near the asked one.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Neighbour {
    pub id: i64,
    pub text: String,
    pub similarity: f64,
    pub answered_assistants: Vec<String>,
}

pub async fn prompt_by_hash(pool: &PgPool, hash: &[u8]) -> sqlx::Result<Option<PromptRow>> {
    sqlx::query_as("SELECT id, text FROM prompts WHERE text_hash = $1").bind(hash).fetch_optional(pool).await
}

pub async fn prompt_by_id(pool: &PgPool, id: i64) -> sqlx::Result<Option<PromptRow>> {
    sqlx::query_as("SELECT id, text FROM prompts WHERE id = $1").bind(id).fetch_optional(pool).await
}

/// Stores a prompt, or returns the one a concurrent Ask stored with the same hash; says which
/// (true: this call stored it).
pub async fn insert_prompt(
    conn: &mut PgConnection,
    text: &str,
    hash: &[u8],
    embedding: Vec<f32>,
) -> sqlx::Result<(PromptRow, bool)> {
    let inserted: Option<PromptRow> = sqlx::query_as(
        "INSERT INTO prompts (text, text_hash, embedding) VALUES ($1, $2, $3) \
         ON CONFLICT (text_hash) DO NOTHING RETURNING id, text",
    )
    .bind(text)
    .bind(hash)
    .bind(Vector::from(embedding))
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(row) => Ok((row, true)),
        None => {
            let sql = "SELECT id, text FROM prompts WHERE text_hash = $1";
            Ok((sqlx::query_as(sql).bind(hash).fetch_one(&mut *conn).await?, false))
        }
    }
}

/// Up to `limit` stored prompts with cosine similarity >= `min_similarity`, most similar first,
/// with the assistants that answered each (HNSW index, `vector_cosine_ops`).
pub async fn neighbours(
    pool: &PgPool,
    embedding: Vec<f32>,
    min_similarity: f64,
    limit: i64,
) -> sqlx::Result<Vec<Neighbour>> {
    sqlx::query_as(
        "WITH nearest AS ( \
             SELECT id, text, (1 - (embedding <=> $1))::float8 AS similarity \
             FROM prompts ORDER BY embedding <=> $1 LIMIT $2) \
         SELECT n.id, n.text, n.similarity, \
                COALESCE((SELECT array_agg(DISTINCT a.assistant ORDER BY a.assistant) \
                          FROM answers a WHERE a.prompt_id = n.id), '{}') AS answered_assistants \
         FROM nearest n WHERE n.similarity >= $3 ORDER BY n.similarity DESC",
    )
    .bind(Vector::from(embedding))
    .bind(limit)
    .bind(min_similarity)
    .fetch_all(pool)
    .await
}

/// Rehashes prompts stored before hashes were taken of the canonical text (hash_version 1), in
/// batches; returns how many were rehashed. A prompt whose canonical hash another prompt holds
/// already ("$1,000" stored beside "$1000") keeps its old hash: it stays reachable by id and by
/// similarity, and the other answers exact matches.
pub async fn rehash_prompts(pool: &PgPool, canonical_hash: impl Fn(&str) -> Vec<u8>) -> sqlx::Result<u64> {
    let mut done = 0;
    let mut after = 0i64;
    loop {
        let batch: Vec<PromptRow> =
            sqlx::query_as("SELECT id, text FROM prompts WHERE hash_version < 2 AND id > $1 ORDER BY id LIMIT 500")
                .bind(after)
                .fetch_all(pool)
                .await?;
        let Some(last) = batch.last() else { return Ok(done) };
        after = last.id;
        for prompt in batch {
            let updated = sqlx::query(
                "UPDATE prompts SET text_hash = $2, hash_version = 2 WHERE id = $1 AND hash_version < 2 \
                 AND NOT EXISTS (SELECT 1 FROM prompts p WHERE p.text_hash = $2 AND p.id <> $1)",
            )
            .bind(prompt.id)
            .bind(canonical_hash(&prompt.text))
            .execute(pool)
            .await;
            match updated {
                Ok(result) if result.rows_affected() == 1 => done += 1,
                // Taken by another prompt, now or by a concurrent insert: the old hash stays.
                Ok(_) | Err(sqlx::Error::Database(_)) => {
                    sqlx::query("UPDATE prompts SET hash_version = 2 WHERE id = $1")
                        .bind(prompt.id)
                        .execute(pool)
                        .await?;
                }
                Err(other) => return Err(other),
            }
        }
    }
}
