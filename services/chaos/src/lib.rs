//! What the chaos run (`aap-chaos`) and the load benchmark (`aap-load`) share: restartable
//! child processes, the platform as they start it on this machine, the customers' token and
//! the run directory.

pub mod proc;
pub mod stack;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// Sends the customer token on every call.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    /// `token` as [`aap_proto::token::header_token`] reads it: less the white space around it,
    /// refused when empty or when no header can carry it.
    pub fn new(token: &str) -> anyhow::Result<Bearer> {
        let header =
            aap_proto::token::bearer_header(token).map_err(|problem| anyhow::anyhow!("the token {problem}"))?;
        Ok(Bearer(header))
    }

    /// The `authorization` header's value: `Bearer <token>`.
    pub fn header(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// The run's directory for logs and data: `given`, or a new `/tmp/<name>-<time>`; created,
/// and returned absolute.
pub fn run_dir(given: Option<&Path>, name: &str) -> anyhow::Result<PathBuf> {
    let dir = match given {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from(format!("/tmp/{name}-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S"))),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(std::fs::canonicalize(&dir)?)
}

/// The directory of the platform's binaries: `given`, or the running binary's own.
pub fn bin_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    match given {
        Some(dir) => Ok(dir.to_path_buf()),
        None => Ok(std::env::current_exe()?.parent().context("binary dir")?.to_path_buf()),
    }
}

/// A binary of the platform in `dir`, or an error saying how to build it.
pub fn binary(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        bail!("{} not found: build it first (cargo build --release -p aap -p aap-bot)", path.display());
    }
    Ok(path)
}
