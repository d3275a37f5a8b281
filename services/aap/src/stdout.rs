//! Standard output of the CLI's commands.
//!
//! SIGPIPE stays ignored in every command (Rust's default), so a server that closes the
//! connection while a command writes to it is an error the command reports. With SIGPIPE at
//! its default disposition instead, hyper's `writev` to that socket killed `aap ask` without a
//! word (exit 141) when it dialled a TLS port with `http://`. Only a write to standard output
//! whose reader went away (`aap accounts list | head`) ends the process as SIGPIPE does, the
//! way a Unix tool ends, without a panic or an error message.

use std::io::{self, Write};

/// Standard output that ends the process as SIGPIPE would when its reader is gone.
pub struct Stdout(io::Stdout);

/// The process's standard output, for a command's results.
pub fn stdout() -> Stdout {
    Stdout(io::stdout())
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(end_if_reader_gone)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(end_if_reader_gone)
    }
}

fn end_if_reader_gone(error: io::Error) -> io::Error {
    if error.kind() == io::ErrorKind::BrokenPipe {
        die_of_sigpipe();
    }
    error
}

#[allow(unsafe_code)]
fn die_of_sigpipe() {
    // SAFETY: SIG_DFL is a valid disposition for SIGPIPE, and raising it then ends the process
    // at once, as the kernel's own SIGPIPE would have.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
}
