//! Files laid out like a mounted Kubernetes Secret, updated the way the kubelet does it; and
//! a way to see a process open a file (each file-watch round opens every watched file).

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::certs::{tempdir, Pki};
use super::wait_for;

/// `name -> ..data/name`, `..data -> ..<timestamp>`; an update writes a new timestamped
/// directory, swaps `..data` with one atomic rename, then deletes the old directory.
pub struct Secret {
    dir: tempfile::TempDir,
    version: usize,
}

/// The files of one Secret version: (file name, contents).
pub type Files = Vec<(&'static str, Vec<u8>)>;

impl Secret {
    pub fn new(files: &Files) -> Secret {
        let mut s = Secret {
            dir: tempdir("snigate-secret-"),
            version: 0,
        };
        s.update(files);
        for (name, _) in files {
            symlink(Path::new("..data").join(name), s.path(name)).unwrap();
        }
        s
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn update(&mut self, files: &Files) {
        let old = format!("..2026_11_23_13_00_0{}.000000001", self.version);
        self.version += 1;
        let new = format!("..2026_11_23_13_00_0{}.000000001", self.version);
        fs::create_dir(self.path(&new)).unwrap();
        for (name, bytes) in files {
            fs::write(self.path(&new).join(name), bytes).unwrap();
        }
        symlink(&new, self.path("..data_tmp")).unwrap();
        fs::rename(self.path("..data_tmp"), self.path("..data")).unwrap();
        if self.version > 1 {
            fs::remove_dir_all(self.path(&old)).unwrap();
        }
    }
}

/// The gateway's files: server.crt, server.key and (as client CA) ca.crt.
pub fn gateway_files(pki: &Pki) -> Files {
    vec![
        ("server.crt", fs::read(pki.server_cert()).unwrap()),
        ("server.key", fs::read(pki.server_key()).unwrap()),
        ("ca.crt", fs::read(pki.ca()).unwrap()),
    ]
}

/// The sidecar's files: ca.crt, client.crt and client.key.
pub fn sidecar_files(pki: &Pki) -> Files {
    vec![
        ("ca.crt", fs::read(pki.ca()).unwrap()),
        ("client.crt", fs::read(pki.client_cert()).unwrap()),
        ("client.key", fs::read(pki.client_key()).unwrap()),
    ]
}

/// Counts the opens of one file (inotify `IN_OPEN`, symlinks followed) from now on.
pub struct Opens {
    fd: OwnedFd,
    seen: usize,
}

impl Opens {
    pub fn of(path: &Path) -> Opens {
        // SAFETY: inotify_init1 returns a new descriptor or -1; we own it from here on.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(raw >= 0, "inotify_init1 failed");
        // SAFETY: `raw` is a valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid inotify descriptor and a NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(raw, c_path.as_ptr(), libc::IN_OPEN) };
        assert!(wd >= 0, "inotify_add_watch {}", path.display());
        Opens { fd, seen: 0 }
    }

    /// Waits until the file has been opened `n` more times.
    pub fn wait(&mut self, n: usize) {
        let target = self.seen + n;
        wait_for(&format!("{n} more opens of a watched file"), || {
            self.read_events();
            (self.seen >= target).then_some(())
        });
    }

    fn read_events(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reading into a buffer we own, of the length we pass.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return;
            }
            let mut at = 0;
            while at < n as usize {
                let header = std::mem::size_of::<libc::inotify_event>();
                // SAFETY: the kernel writes whole events; `at` is the start of one.
                let event: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
                if event.mask & libc::IN_OPEN != 0 {
                    self.seen += 1;
                }
                at += header + event.len as usize;
            }
        }
    }
}
