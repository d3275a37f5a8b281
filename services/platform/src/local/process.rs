//! Child processes that never outlive their owner: spawned with a parent-death signal, stopped
//! with a chosen signal on drop, and with their output forwarded to `tracing`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{Child, Command};

use super::LocalError;

/// How many of the last output lines are kept to explain a failed start.
const KEPT_LINES: usize = 40;

/// How long `stop` waits for a graceful exit before it kills.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// The last lines a child printed, shared with the threads that read its pipes.
#[derive(Clone, Default)]
pub(crate) struct RecentOutput(Arc<Mutex<VecDeque<String>>>);

impl RecentOutput {
    fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if lines.len() == KEPT_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The kept lines, joined with newlines.
    pub(crate) fn text(&self) -> String {
        let lines = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        lines.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }
}

/// A running child that receives `stop_signal` when dropped, when `stop` is called, and (through
/// `PR_SET_PDEATHSIG`) when the thread that spawned it exits.
pub(crate) struct ManagedChild {
    name: &'static str,
    child: Option<Child>,
    pid: u32,
    stop_signal: libc::c_int,
    output: RecentOutput,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl ManagedChild {
    /// Spawns `command` with piped output, in its own process group (a Ctrl-C on the terminal
    /// reaches only our process, which then stops its children in order).
    pub(crate) fn spawn(
        name: &'static str,
        mut command: Command,
        stop_signal: libc::c_int,
    ) -> Result<Self, LocalError> {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        die_with_parent_thread(&mut command, stop_signal);
        let mut child = command.spawn().map_err(|source| LocalError::Spawn { name, source })?;
        let pid = child.id().ok_or_else(|| LocalError::Spawn {
            name,
            source: std::io::Error::other("child exited before its pid was read"),
        })?;
        let output = RecentOutput::default();
        let pipes = [
            child.stdout.take().and_then(|pipe| pipe.into_owned_fd().ok()),
            child.stderr.take().and_then(|pipe| pipe.into_owned_fd().ok()),
        ];
        let readers =
            pipes.into_iter().flatten().filter_map(|fd| forward_lines(name, pid, fd, output.clone())).collect();
        Ok(Self { name, child: Some(child), pid, stop_signal, output, readers })
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The last lines the child printed so far.
    pub(crate) fn recent_output(&self) -> String {
        self.output.text()
    }

    /// The last lines the child printed, complete once it has exited: waits (a few seconds
    /// at most, in case a grandchild still holds the pipes) for the readers to reach the end.
    pub(crate) async fn output_after_exit(&mut self) -> String {
        let readers = std::mem::take(&mut self.readers);
        let joined = tokio::task::spawn_blocking(move || {
            for reader in readers {
                let _ = reader.join();
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(5), joined).await;
        self.output.text()
    }

    /// Turns an exit during startup into an error carrying what the child printed.
    pub(crate) async fn exited_error(&mut self, status: ExitStatus) -> LocalError {
        let output = self.output_after_exit().await;
        LocalError::Failed { name: self.name, status, output }
    }

    /// `Some(status)` once the child has exited.
    pub(crate) fn try_exit_status(&mut self) -> Result<Option<ExitStatus>, LocalError> {
        let name = self.name;
        match self.child.as_mut() {
            Some(child) => child.try_wait().map_err(|source| LocalError::Wait { name, source }),
            None => Ok(None),
        }
    }

    /// Waits for the child to exit by itself.
    pub(crate) async fn wait(&mut self) -> Result<ExitStatus, LocalError> {
        let name = self.name;
        match self.child.as_mut() {
            Some(child) => child.wait().await.map_err(|source| LocalError::Wait { name, source }),
            None => Err(LocalError::Wait { name, source: std::io::Error::other("child already stopped") }),
        }
    }

    /// Sends the stop signal and waits for the exit; kills the child if it is still there after
    /// a minute, which only a wedged process takes.
    pub(crate) async fn stop(mut self) -> Result<ExitStatus, LocalError> {
        let name = self.name;
        let Some(mut child) = self.child.take() else {
            return Err(LocalError::Wait { name, source: std::io::Error::other("child already stopped") });
        };
        if child.try_wait().map_err(|source| LocalError::Wait { name, source })?.is_none() {
            send_signal(self.pid, self.stop_signal);
        }
        match tokio::time::timeout(STOP_GRACE, child.wait()).await {
            Ok(status) => status.map_err(|source| LocalError::Wait { name, source }),
            Err(_) => {
                tracing::warn!(name, pid = self.pid, "child ignored its stop signal, killing it");
                child.kill().await.map_err(|source| LocalError::Wait { name, source })?;
                child.wait().await.map_err(|source| LocalError::Wait { name, source })
            }
        }
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        // Signal only a child not yet reaped: a reaped pid may already belong to someone else.
        // tokio reaps the dropped child in the background.
        if let Some(child) = self.child.as_mut()
            && matches!(child.try_wait(), Ok(None))
        {
            tracing::debug!(name = self.name, pid = self.pid, "stopping child on drop");
            send_signal(self.pid, self.stop_signal);
        }
    }
}

/// Reads `fd` line by line on a plain thread, so the forwarding neither depends on a tokio
/// runtime that may end before the child does, nor lets a full pipe block the child.
fn forward_lines(
    name: &'static str,
    pid: u32,
    fd: OwnedFd,
    output: RecentOutput,
) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new().name(format!("{name}-output")).spawn(move || {
        let reader = BufReader::new(std::fs::File::from(fd));
        for line in reader.split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line).trim_end().to_owned();
            tracing::debug!(target: "aap_platform::local::child", name, pid, "{line}");
            output.push(line);
        }
    });
    spawned
        .inspect_err(|error| {
            tracing::warn!(name, pid, %error, "could not start the thread reading child output");
        })
        .ok()
}

/// Runs a short-lived program (initdb) to its end, logging its output, and fails with that
/// output when it does not succeed.
pub(crate) async fn run_to_end(name: &'static str, command: Command) -> Result<(), LocalError> {
    let mut child = ManagedChild::spawn(name, command, libc::SIGTERM)?;
    let status = child.wait().await?;
    if status.success() { Ok(()) } else { Err(child.exited_error(status).await) }
}

/// Whether we run as root, who must hand PostgreSQL to an unprivileged user.
#[allow(unsafe_code)]
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Makes the kernel send `signal` to the child when the thread that spawned it exits (which
/// includes the whole process exiting or being killed), so no child outlives its owner even
/// when no destructor runs.
#[allow(unsafe_code)]
pub fn die_with_parent_thread(command: &mut Command, signal: libc::c_int) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (prctl, getppid) without allocating. std applies uid/gid before running it,
    // so the credential change cannot clear the death signal again.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: nobody would signal us then.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Sends `signal` to `pid`, ignoring a process that is already gone.
#[allow(unsafe_code)]
pub fn send_signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own unreaped child.
    let result = unsafe { libc::kill(pid, signal) };
    if result == -1 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pid, signal, %error, "could not signal child");
        }
    }
}
