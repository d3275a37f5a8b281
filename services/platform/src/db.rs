//! The PostgreSQL pool and the embedded migrations every service shares.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

/// Migrations of every service's tables, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Errors reaching or preparing the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database url: {0}")]
    Url(#[source] sqlx::Error),
    /// `target` names the server, database and user (never the password).
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot migrate the database: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The database holds a migration this build does not have: a newer version migrated it,
    /// and this one cannot know what that changed (sqlx says only that the migration is
    /// "missing in the resolved migrations").
    #[error(
        "the database was migrated by a newer version of the platform (migration {applied}; this build's last is \
         {known}): run that version or a later one, or restore the backup taken before the upgrade (docs/operations.md, \
         \"Upgrading\")"
    )]
    NewerSchema { applied: i64, known: i64 },
}

/// Connects a pool to `url` and brings the schema up to date; its connections are reported as
/// `aap_db_pool_*{pool="platform"}`.
pub async fn connect_and_migrate(url: &str, max_connections: u32) -> Result<PgPool, DbError> {
    connect_and_migrate_with(url, max_connections, &[]).await
}

/// [`connect_and_migrate`], every connection starting with these run-time settings (`-c
/// name=value` at connection start, e.g. pgvector's `hnsw.ef_search`).
pub async fn connect_and_migrate_with(
    url: &str,
    max_connections: u32,
    settings: &[(&str, String)],
) -> Result<PgPool, DbError> {
    let options: PgConnectOptions = url.parse().map_err(DbError::Url)?;
    let options = options.options(settings.iter().map(|(name, value)| (*name, value.as_str())));
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options.clone())
        .await;
    let pool = match pool {
        Ok(pool) => pool,
        Err(error) => return Err(connect_error(&options, error).await),
    };
    MIGRATOR.run(&pool).await.map_err(|error| match error {
        sqlx::migrate::MigrateError::VersionMissing(applied) => {
            DbError::NewerSchema { applied, known: MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0) }
        }
        error => DbError::Migrate(error),
    })?;
    crate::metrics::watch_pool("platform", &pool);
    Ok(pool)
}

/// Why the pool could not connect. A server that refuses connections (down, a wrong port) makes
/// the pool try again until its acquire time-out, and then it says only "pool timed out": one
/// more connection, outside the pool, gives the refusal itself.
async fn connect_error(options: &PgConnectOptions, error: sqlx::Error) -> DbError {
    let target = format!(
        "{}:{} (database {}, user {})",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or(options.get_username()),
        options.get_username()
    );
    let source = match error {
        sqlx::Error::PoolTimedOut => match tokio::time::timeout(Duration::from_secs(10), options.connect()).await {
            Ok(Err(cause)) => cause,
            Ok(Ok(_)) | Err(_) => sqlx::Error::PoolTimedOut,
        },
        error => error,
    };
    DbError::Connect { target, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that refuses connections is named with the refusal, not "pool timed out".
    #[tokio::test]
    async fn a_refused_connection_names_the_server_and_the_refusal() {
        // A port nobody listens on: bound by the OS, then let go.
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind").port();
        let error = connect_and_migrate(&format!("postgres://aap:secret@127.0.0.1:{port}/aap"), 2)
            .await
            .expect_err("nothing listens there");
        let text = error.to_string();
        assert!(text.contains(&format!("127.0.0.1:{port} (database aap, user aap)")), "{text}");
        assert!(text.to_lowercase().contains("connection refused"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
