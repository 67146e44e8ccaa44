//! A small disk for the gateway's state directory, to be filled up on purpose: a tmpfs of a
//! given size mounted on a directory (`mount -t tmpfs`, so root or CAP_SYS_ADMIN), filled with a
//! filler file until the kernel answers ENOSPC, then freed again.
//!
//! Input: the directory and the size. Output: a [`SmallDisk`] that unmounts on drop (lazily, so a
//! process still holding a file there cannot keep it mounted), so a failing scenario never leaves
//! a mount behind. Failure: [`std::io::Error`]s naming the directory and, for `mount`, what it
//! needs.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The name of the filler file inside the disk.
const FILLER: &str = "disk-full-filler";

/// A tmpfs mounted on a directory.
#[derive(Debug)]
pub struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    /// Why a small disk cannot be mounted here (not root), or `None` when it can be tried.
    /// Tests that need one skip with this reason printed.
    pub fn unavailable() -> Option<String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        (euid != 0)
            .then(|| format!("mount -t tmpfs needs root (running as uid {euid}); CI runs as root"))
    }

    /// Mounts a tmpfs of `bytes` on `path` (created if missing).
    pub fn mount(path: &Path, bytes: u64) -> io::Result<SmallDisk> {
        std::fs::create_dir_all(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0700"),
                "helsemelding-chaos",
            ])
            .arg(path)
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("running mount: {e}")))?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "mount -t tmpfs on {}: {} (a small disk needs root or CAP_SYS_ADMIN)",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(SmallDisk {
            path: path.to_path_buf(),
        })
    }

    /// Writes a filler file until the disk is full (ENOSPC); returns the bytes it took.
    pub fn fill(&self) -> io::Result<u64> {
        let p = self.path.join(FILLER);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)?;
        let mut written = 0u64;
        // Big steps first, then page-sized ones: tmpfs hands out space by the page.
        for chunk in [1 << 20, 4096] {
            let buf = vec![0u8; chunk];
            loop {
                match f.write(&buf) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::StorageFull => break,
                    Err(e) => {
                        return Err(io::Error::new(e.kind(), format!("{}: {e}", p.display())))
                    }
                }
            }
        }
        Ok(written)
    }

    /// Removes the filler file: the disk has room again.
    pub fn free(&self) -> io::Result<()> {
        let p = self.path.join(FILLER);
        std::fs::remove_file(&p)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
    }
}
