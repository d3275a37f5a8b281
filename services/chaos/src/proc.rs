//! A child process the harness can kill and start again with the same command line: its output
//! appended to a log file in the run dir, in its own process group, and killed by the kernel
//! when the harness dies (`PR_SET_PDEATHSIG`), so a run never leaves anything behind.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;
use tokio::process::{Child, Command};

/// One restartable child.
pub struct Proc {
    /// Its name in logs and the report, e.g. `answers-1`.
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// How often it was started.
    pub starts: u32,
}

impl Proc {
    /// A child to be started with [`Proc::start`]; its output goes to `<run_dir>/<name>.log`.
    pub fn new(name: &str, program: &Path, args: Vec<String>, envs: Vec<(String, String)>, run_dir: &Path) -> Proc {
        Proc {
            name: name.to_owned(),
            program: program.to_path_buf(),
            args,
            envs,
            log: run_dir.join(format!("{name}.log")),
            child: None,
            starts: 0,
        }
    }

    /// Starts the child (again); must run on a thread that lives as long as the child should (a
    /// tokio worker of the main runtime), as the parent-death signal follows that thread.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        self.starts += 1;
        writeln!(log, "=== aap-chaos: start {} of {} at {}", self.starts, self.name, chrono::Utc::now())?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true);
        aap_platform::local::die_with_parent_thread(&mut command, libc::SIGKILL);
        let child = command.spawn().with_context(|| format!("start {} ({})", self.name, self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, and waits until it is gone. Nothing to do when it is not running.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Stops the child as an orchestrator does: SIGTERM, then SIGKILL if it has not exited
    /// within `grace`. How long it took to exit, and whether it had to be killed.
    pub async fn terminate(&mut self, grace: std::time::Duration) -> (std::time::Duration, bool) {
        let started = std::time::Instant::now();
        let Some(mut child) = self.child.take() else { return (std::time::Duration::ZERO, false) };
        if let Some(pid) = child.id() {
            aap_platform::local::send_signal(pid, libc::SIGTERM);
        }
        let killed = match tokio::time::timeout(grace, child.wait()).await {
            Ok(_) => false,
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                true
            }
        };
        (started.elapsed(), killed)
    }

    /// The exit status when the child has ended by itself.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|child| child.try_wait().ok().flatten())
    }

    /// Sets an environment variable of the child's next start (replacing one of that name).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.envs.retain(|(k, _)| k != key);
        self.envs.push((key.to_owned(), value.to_owned()));
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }
}
