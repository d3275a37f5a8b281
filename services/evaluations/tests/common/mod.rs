//! What the evaluations crate's database tests share.

/// Stores a prompt of `text` (its embedding a constant: these tests never compare them);
/// returns its id.
pub async fn insert_prompt(pool: &sqlx::PgPool, text: &str) -> anyhow::Result<i64> {
    let (prompt_id,): (i64,) = sqlx::query_as(
        "INSERT INTO prompts (text, text_hash, embedding) \
         VALUES ($1, sha256(convert_to($1, 'UTF8')), array_fill(0.1, ARRAY[384])::vector) RETURNING id",
    )
    .bind(text)
    .fetch_one(pool)
    .await?;
    Ok(prompt_id)
}
