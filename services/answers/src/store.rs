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
/// with the assistants that answered each: the HNSW index's nearest (`vector_cosine_ops`) and,
/// scanned exactly beside them, the prompts the index cannot reach (`prompts_unreachable`, which
/// [`audit_reachability`] keeps).
pub async fn neighbours(
    pool: &PgPool,
    embedding: Vec<f32>,
    min_similarity: f64,
    limit: i64,
) -> sqlx::Result<Vec<Neighbour>> {
    sqlx::query_as(
        "WITH candidates AS ( \
             (SELECT id, text, embedding <=> $1 AS distance FROM prompts ORDER BY embedding <=> $1 LIMIT $2) \
             UNION \
             (SELECT p.id, p.text, p.embedding <=> $1 FROM prompts_unreachable u JOIN prompts p ON p.id = u.prompt_id)), \
         nearest AS ( \
             SELECT id, text, (1 - distance)::float8 AS similarity FROM candidates ORDER BY distance LIMIT $2) \
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

/// The largest prompt id stored (0 when none).
pub async fn last_prompt_id(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM prompts").fetch_one(pool).await
}

/// What one round of [`audit_reachability`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Audit {
    /// The last prompt id it checked (the next round starts after it); `None`: it checked none,
    /// the end of the table was reached (or another replica held the audit's lock).
    pub last: Option<i64>,
    /// Prompts checked.
    pub checked: u64,
    /// Prompts the index did not return for their own embedding, with nothing near them
    /// returned either, listed by this round (those listed before are not counted again).
    pub unreachable: Vec<i64>,
    /// Such prompts left unlisted: the list was full ([`MAX_LISTED`]).
    pub unlisted: u64,
    /// Prompts the index did not return, their near siblings returned instead (not listed).
    pub in_clusters: u64,
    /// Prompts listed before that the index returns again, taken off the list.
    pub reachable_again: u64,
    /// Prompts listed as unreachable now, in all.
    pub listed: i64,
    /// Whether another replica was auditing (this round did nothing).
    pub busy: bool,
}

/// Distance under which a prompt returned for another's embedding counts as that prompt (the
/// same vector up to rounding: itself, or a prompt with an identical embedding, which a search
/// near it finds as well).
const SAME_VECTOR: f64 = 1e-5;

/// Most prompts listed as unreachable: every similarity search scans the list (about 5 µs a
/// prompt), so it stays short; past it, prompts are left unlisted and counted.
pub const MAX_LISTED: i64 = 256;

/// Checks up to `count` prompts after id `after` and up to `until`, in id order: asks the HNSW index for each
/// one's own embedding (as a similarity search does, with the session's `hnsw.ef_search`). A
/// prompt it does not return among the 10 nearest, and whose 10 nearest hold nothing at or above
/// `min_similarity` either, is listed in `prompts_unreachable` (up to [`MAX_LISTED`]): a search
/// near it finds neither it nor anything that could stand for it. A prompt the index misses in a
/// dense cluster, its near siblings returned instead, is not listed: there are far more of them
/// (9.6% of a soak's 45,000 templated prompts) than a list scanned by every search can hold, and
/// the siblings are what a search near it gets. A listed prompt the index returns again is taken
/// off. One replica audits at a time (an advisory lock a round).
pub async fn audit_reachability(
    pool: &PgPool,
    after: i64,
    until: i64,
    count: i64,
    min_similarity: f64,
) -> sqlx::Result<Audit> {
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('aap.prompts_reachability'))")
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(Audit { busy: true, ..Audit::default() });
    }
    // Per prompt: whether the index returned it (or its identical vector), and the nearest
    // distance among what it returned.
    let checked: Vec<(i64, bool, Option<f64>)> = sqlx::query_as(
        "SELECT p.id, bool_or(n.distance < $3), min(n.distance) \
         FROM (SELECT id, embedding FROM prompts WHERE id > $1 AND id <= $4 ORDER BY id LIMIT $2) p \
         LEFT JOIN LATERAL (SELECT q.embedding <=> p.embedding AS distance FROM prompts q \
                            ORDER BY q.embedding <=> p.embedding LIMIT 10) n ON true \
         GROUP BY p.id ORDER BY p.id",
    )
    .bind(after)
    .bind(count)
    .bind(SAME_VECTOR)
    .bind(until)
    .fetch_all(&mut *tx)
    .await?;
    let isolated = |nearest: &Option<f64>| nearest.is_none_or(|distance| 1.0 - distance < min_similarity);
    let unreachable: Vec<i64> =
        checked.iter().filter(|(_, found, nearest)| !found && isolated(nearest)).map(|(id, ..)| *id).collect();
    let reachable: Vec<i64> = checked.iter().filter(|(_, found, _)| *found).map(|(id, ..)| *id).collect();
    // Those not listed yet take the room left; one listed before stays as it is.
    let fresh: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM unnest($1::bigint[]) id \
         WHERE NOT EXISTS (SELECT 1 FROM prompts_unreachable u WHERE u.prompt_id = id) ORDER BY id",
    )
    .bind(&unreachable)
    .fetch_all(&mut *tx)
    .await?;
    let listed_before: i64 = sqlx::query_scalar("SELECT count(*) FROM prompts_unreachable").fetch_one(&mut *tx).await?;
    let room = usize::try_from(MAX_LISTED - listed_before).unwrap_or(0);
    let (to_list, unlisted) = fresh.split_at(room.min(fresh.len()));
    let inserted =
        sqlx::query("INSERT INTO prompts_unreachable (prompt_id) SELECT unnest($1::bigint[]) ON CONFLICT DO NOTHING")
            .bind(to_list)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    let reachable_again = sqlx::query("DELETE FROM prompts_unreachable WHERE prompt_id = ANY($1)")
        .bind(&reachable)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    // Only the audit writes the list, and one round at a time (the lock above).
    let listed = listed_before + inserted as i64 - reachable_again as i64;
    Ok(Audit {
        last: checked.last().map(|(id, ..)| *id),
        checked: checked.len() as u64,
        unreachable: to_list.to_vec(),
        unlisted: unlisted.len() as u64,
        in_clusters: checked.iter().filter(|(_, found, nearest)| !found && !isolated(nearest)).count() as u64,
        reachable_again,
        listed,
        busy: false,
    })
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
