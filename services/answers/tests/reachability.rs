//! Prompts the HNSW index cannot reach, on a real PostgreSQL with pgvector: the index alone does
//! not return them even for their own embedding; once the audit has listed them, the similarity
//! search finds each.

use aap_answers::store::{self, Neighbour};
use sqlx::PgPool;

/// Dimensions of the model's embeddings (the column is `vector(384)`).
const DIMENSIONS: usize = 384;

/// A deterministic stream of numbers in [-1, 1) (xorshift64*): the same vectors every run.
struct Numbers(u64);

impl Numbers {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        (bits as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn vector(&mut self) -> Vec<f32> {
        normalised((0..DIMENSIONS).map(|_| self.next()).collect())
    }
}

fn normalised(vector: Vec<f32>) -> Vec<f32> {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    vector.into_iter().map(|x| x / norm).collect()
}

async fn store(pool: &PgPool, text: &str, embedding: Vec<f32>) -> i64 {
    let mut conn = pool.acquire().await.expect("connection");
    let hash = aap_answers::normalize::prompt_hash(text);
    let (row, stored) = store::insert_prompt(&mut conn, text, &hash, embedding).await.expect("insert");
    assert!(stored, "{text} stored once");
    row.id
}

/// Whether the search for `embedding` returns prompt `id` first, as itself (similarity ~1).
fn found_first(neighbours: &[Neighbour], id: i64) -> bool {
    neighbours.first().is_some_and(|n| n.id == id && n.similarity > 0.9999)
}

/// Prompts stored before a dense cluster grows (each in a direction of its own, near nothing
/// else) lose every link that led to them: the index does not return them for their own
/// embedding. The audit lists them, and the similarity search then finds every one.
/// A database of 16 prompts each in a direction of its own, then a cluster of 1,500 near one
/// direction; the 16 with their embeddings, and those the index alone does not return for their
/// own embedding (at least one, or the graph this needs did not form).
async fn isolated_then_clustered() -> (PgPool, Vec<(i64, Vec<f32>)>, Vec<i64>) {
    let url = aap_testkit::fresh_database().await;
    let pool = aap_platform::db::connect_and_migrate(&url, 4).await.expect("database");
    let mut numbers = Numbers(0x9E37_79B9_7F4A_7C15);

    let mut isolated = Vec::new();
    for index in 0..16 {
        let embedding = numbers.vector();
        isolated.push((store(&pool, &format!("isolated prompt {index}"), embedding.clone()).await, embedding));
    }
    // Templated prompts: one direction, each a little off it (cosine about 0.99 with each other).
    let centre = numbers.vector();
    for index in 0..1_500 {
        let near: Vec<f32> = centre.iter().map(|x| x + 0.005 * numbers.next()).collect();
        store(&pool, &format!("cluster prompt {index}"), normalised(near)).await;
    }

    // The index alone (nothing listed yet), as the search was before the audit.
    let mut lost = Vec::new();
    for (id, embedding) in &isolated {
        let neighbours = store::neighbours(&pool, embedding.clone(), 0.5, 5).await.expect("search");
        if !found_first(&neighbours, *id) {
            lost.push(*id);
        }
    }
    assert!(
        !lost.is_empty(),
        "the index returned each of the 16 isolated prompts: the graph this test needs did not form"
    );
    (pool, isolated, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_lists_the_prompts_the_index_cannot_reach_and_the_search_finds_them() {
    let (pool, isolated, lost) = isolated_then_clustered().await;

    // One sweep of the audit over every prompt, in rounds as the service makes them.
    let mut after = 0;
    let mut listed = Vec::new();
    let mut in_clusters = 0;
    loop {
        let audit = store::audit_reachability(&pool, after, i64::MAX, 200, 0.95).await.expect("audit");
        assert!(!audit.busy, "no other replica audits this database");
        listed.extend(audit.unreachable.iter().copied());
        in_clusters += audit.in_clusters;
        match audit.last {
            Some(last) => after = last,
            None => break,
        }
    }
    for id in &lost {
        assert!(listed.contains(id), "prompt {id}, which the index did not return, is listed (listed: {listed:?})");
    }
    // A second sweep finds them again and neither lists nor counts them twice.
    let mut after = 0;
    loop {
        let audit = store::audit_reachability(&pool, after, i64::MAX, 200, 0.95).await.expect("audit");
        assert!(audit.unreachable.is_empty() && audit.unlisted == 0, "nothing new on a second sweep: {audit:?}");
        assert_eq!(audit.listed, listed.len() as i64, "the list unchanged");
        match audit.last {
            Some(last) => after = last,
            None => break,
        }
    }
    // Only prompts near nothing else are listed: a cluster prompt the index misses has its
    // siblings returned instead, and a list every search scans could not hold them all.
    let isolated_ids: Vec<i64> = isolated.iter().map(|(id, _)| *id).collect();
    assert!(listed.iter().all(|id| isolated_ids.contains(id)), "only isolated prompts listed: {listed:?}");
    for (id, embedding) in &isolated {
        let neighbours = store::neighbours(&pool, embedding.clone(), 0.5, 5).await.expect("search");
        assert!(found_first(&neighbours, *id), "prompt {id} is found as itself: {neighbours:?}");
    }

    // A listed prompt the index returns again comes off the list at the next sweep.
    let reachable = isolated.iter().map(|(id, _)| *id).find(|id| !listed.contains(id));
    if let Some(reachable) = reachable {
        sqlx::query("INSERT INTO prompts_unreachable (prompt_id) VALUES ($1)")
            .bind(reachable)
            .execute(&pool)
            .await
            .expect("list");
        let audit = store::audit_reachability(&pool, reachable - 1, i64::MAX, 1, 0.95).await.expect("audit");
        assert_eq!(audit.reachable_again, 1, "prompt {reachable} comes off the list: {audit:?}");
    }
    println!(
        "{} of 16 isolated prompts were out of the index's reach; listed: {}; cluster prompts missed, not listed: {in_clusters}",
        lost.len(),
        listed.len()
    );
}

/// `--similarity-ef-search` reaches every connection of the platform's pool, so the similarity
/// search and the audit walk the index that wide.
#[tokio::test]
async fn the_search_breadth_is_set_on_every_connection() {
    let url = aap_testkit::fresh_database().await;
    let settings = [("hnsw.ef_search", "120".to_owned())];
    let pool = aap_platform::db::connect_and_migrate_with(&url, 3, &settings).await.expect("database");
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = pool.acquire().await.expect("connection");
        // pgvector loaded in the session (its settings defined), as a search loads it.
        sqlx::query("SELECT '[1,2]'::vector <=> '[2,1]'::vector").execute(&mut *conn).await.expect("vector");
        let ef: String = sqlx::query_scalar("SHOW hnsw.ef_search").fetch_one(&mut *conn).await.expect("show");
        assert_eq!(ef, "120");
        held.push(conn);
    }
}

/// The service's audit task sweeps on its own and lists what the index misses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_audit_sweeps_the_table_and_lists_what_the_index_misses() {
    let (pool, isolated, lost) = isolated_then_clustered().await;
    aap_answers::reachability::spawn(pool.clone(), 500, 0.95);
    let started = std::time::Instant::now();
    loop {
        let listed: Vec<i64> =
            sqlx::query_scalar("SELECT prompt_id FROM prompts_unreachable").fetch_all(&pool).await.expect("listed");
        if lost.iter().all(|id| listed.contains(id)) {
            break;
        }
        assert!(started.elapsed().as_secs() < 60, "after 60 s, listed {listed:?} of {lost:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for (id, embedding) in &isolated {
        let neighbours = store::neighbours(&pool, embedding.clone(), 0.5, 5).await.expect("search");
        assert!(found_first(&neighbours, *id), "prompt {id} is found as itself: {neighbours:?}");
    }
}
