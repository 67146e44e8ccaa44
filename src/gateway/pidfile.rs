//! The pid file `<state dir>/helsemelding.pid`: one running gateway per state directory, and how
//! `helsemelding reload` finds the process to send SIGHUP to.
//!
//! `serve` writes it once the configuration checks out, before it opens the store, and removes it
//! when it stops cleanly. A file left behind by a process that died (`kill -9`, power loss) is
//! stale: the next `serve` replaces it. A file naming a live gateway makes `serve` refuse to start
//! — two gateways on one state directory would fight over the delivery store.
//!
//! Input: the state directory. Output: a [`PidFile`] held while serving, or what [`read`] finds.
//! Failures: [`PidFileError`], each naming the file.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The file name inside the state directory.
pub const FILE_NAME: &str = "helsemelding.pid";

/// Where the pid file of a gateway with this state directory is.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// What a pid file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A live process that looks like a gateway.
    Running(u32),
    /// No such process (or one that is not a gateway): the file was left behind.
    Stale(u32),
}

#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: does not hold a process id ({content:?})", path.display())]
    Garbled { path: PathBuf, content: String },
    #[error("another gateway (pid {pid}) is running with this state directory ({}); stop it first, or give this one its own paths.state", path.display())]
    HeldBy { path: PathBuf, pid: u32 },
}

/// Reads the pid file: `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<Holder>, PidFileError> {
    let content = match std::fs::read_to_string(path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PidFileError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let pid: u32 = content
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| PidFileError::Garbled {
            path: path.to_owned(),
            content: content.chars().take(40).collect(),
        })?;
    Ok(Some(if is_gateway(pid) {
        Holder::Running(pid)
    } else {
        Holder::Stale(pid)
    }))
}

/// Whether `pid` is a live process that is a helsemelding gateway (where `/proc` tells; a pid
/// can be reused by an unrelated process after the gateway died).
fn is_gateway(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
    let exists = unsafe { libc::kill(raw, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => cmdline
            .windows(b"helsemelding".len())
            .any(|w| w == b"helsemelding"),
        // No /proc (or not readable): trust the process table.
        Err(_) => true,
    }
}

/// The pid file of this process, while it serves. [`PidFile::release`] removes it.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes this process's id to `<state_dir>/helsemelding.pid` (creating the directory), replacing
    /// a stale file; refuses when a live gateway holds it.
    pub fn acquire(state_dir: &Path) -> Result<PidFile, PidFileError> {
        let path = path_in(state_dir);
        let io = |source| PidFileError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let pid = std::process::id();
        // Two attempts: the second after removing a stale file. `create_new` makes two gateways
        // starting at once see each other.
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(format!("{pid}\n").as_bytes())
                        .and_then(|()| f.sync_all())
                        .map_err(io)?;
                    return Ok(PidFile { path, pid });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match read(&path) {
                    Ok(Some(Holder::Running(other))) if other != pid => {
                        return Err(PidFileError::HeldBy { path, pid: other })
                    }
                    // Stale, garbled, ours (a restart in the same process), or gone meanwhile.
                    _ => {
                        tracing::warn!(file = %path.display(), "replacing a pid file left behind by a gateway that did not stop cleanly");
                        match std::fs::remove_file(&path) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(io(e)),
                        }
                    }
                },
                Err(e) => return Err(io(e)),
            }
        }
        match read(&path) {
            Ok(Some(Holder::Running(other))) => Err(PidFileError::HeldBy { path, pid: other }),
            _ => Err(io(std::io::Error::other(
                "could not be written (another process keeps replacing it)",
            ))),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file, if it still names this process.
    pub fn release(self) {
        if let Ok(content) = std::fs::read_to_string(&self.path) {
            if content.trim() == self.pid.to_string() {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(file = %self.path.display(), error = %e, "cannot remove the pid file");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("hm-pid-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_stale_file_is_replaced_and_removed_at_release() {
        let d = dir();
        let path = path_in(&d);
        // No process has pid 0x7fff_fff0 (above the kernel's pid_max).
        std::fs::write(&path, "2147483632\n").unwrap();
        assert_eq!(read(&path).unwrap(), Some(Holder::Stale(2147483632)));
        let held = PidFile::acquire(&d).unwrap();
        let me = std::process::id();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            me.to_string()
        );
        held.release();
        assert!(!path.exists());
        assert_eq!(read(&path).unwrap(), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_garbled_file_is_named() {
        let d = dir();
        let path = path_in(&d);
        std::fs::write(&path, "not a pid").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("does not hold a process id"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
