//! A private X server for a headful browser on a machine without a display (containers,
//! servers): `Xvfb` on a display number it picks itself, stopped with the browser.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use super::BrowserError;

/// The virtual screen: a common desktop size, so sites lay out as for people.
const SCREEN: &str = "1920x1080x24";

/// A running Xvfb. Dropping it kills the server; [`Xvfb::stop`] also waits for it.
pub(crate) struct Xvfb {
    child: Child,
    display: String,
    // Kept open: Xvfb must never meet a closed stdout.
    _stdout: BufReader<ChildStdout>,
}

impl Xvfb {
    /// Starts `Xvfb -displayfd 1 -screen 0 1920x1080x24 -nolisten tcp`: Xvfb picks a free
    /// display number and writes it to its stdout once it accepts clients, so there is neither
    /// a number to guess nor a socket to poll.
    pub(crate) async fn start(binary: &PathBuf, timeout: Duration) -> Result<Xvfb, BrowserError> {
        let mut child = Command::new(binary)
            .args(["-displayfd", "1", "-screen", "0", SCREEN, "-nolisten", "tcp"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| BrowserError::Spawn { path: binary.clone(), source })?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill().await;
            return Err(BrowserError::Display("no stdout pipe".to_owned()));
        };
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(timeout, stdout.read_line(&mut line)).await;
        let number = match read {
            Ok(Ok(n)) if n > 0 => line.trim().parse::<u32>().ok(),
            _ => None,
        };
        let Some(number) = number else {
            let _ = child.kill().await;
            let reason = match read {
                Err(_) => format!("no display number after {timeout:?}"),
                Ok(_) => format!("Xvfb exited or printed {:?} instead of a display number", line.trim()),
            };
            return Err(BrowserError::Display(reason));
        };
        let name = format!(":{number}");
        tracing::debug!(display = name.as_str(), "Xvfb started");
        Ok(Xvfb { child, display: name, _stdout: stdout })
    }

    /// The `DISPLAY` value for clients, e.g. ":99".
    pub(crate) fn display(&self) -> &str {
        &self.display
    }

    /// The server's process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the server and reaps it.
    pub(crate) async fn stop(mut self) {
        if let Err(error) = self.child.kill().await {
            tracing::debug!(%error, "Xvfb already gone");
        }
    }
}
