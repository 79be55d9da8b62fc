//! `write_atomic` makes its rename durable by fsyncing the destination's directory. Whether
//! the rename survives a power cut cannot be tested; what can be seen is that the directory
//! is opened (the only way to fsync it) after the file is written: Linux's inotify reports
//! every open of a watched directory. This file holds a single test because it changes the
//! working directory of the process.
#![cfg(target_os = "linux")]

use std::ffi::{c_char, c_int, CString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nc_data::io::write_atomic_bytes;

const IN_OPEN: u32 = 0x20;
const IN_ISDIR: u32 = 0x4000_0000;
const IN_NONBLOCK: c_int = 0o4000;
const IN_CLOEXEC: c_int = 0o2_000_000;
/// The fixed part of `struct inotify_event` (wd, mask, cookie, len); the name follows.
const EVENT_HEADER: usize = 16;

extern "C" {
    fn inotify_init1(flags: c_int) -> c_int;
    fn inotify_add_watch(fd: c_int, path: *const c_char, mask: u32) -> c_int;
}

/// Counts the opens of one directory itself (not of the files in it).
struct DirectoryOpens {
    inotify: File,
}

impl DirectoryOpens {
    fn watch(dir: &Path) -> Self {
        // SAFETY: plain system calls; the descriptor is owned by `inotify` from here on.
        let fd = unsafe { inotify_init1(IN_NONBLOCK | IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1: {}", io::Error::last_os_error());
        let inotify = unsafe { File::from_raw_fd(fd) };
        let dir_name = CString::new(dir.as_os_str().as_bytes()).unwrap();
        let wd = unsafe { inotify_add_watch(fd, dir_name.as_ptr(), IN_OPEN) };
        assert!(
            wd >= 0,
            "inotify_add_watch {}: {}",
            dir.display(),
            io::Error::last_os_error()
        );
        DirectoryOpens { inotify }
    }

    /// How many times the directory was opened since the watch began (or the last call).
    fn take(&mut self) -> usize {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut opens = 0;
        loop {
            let n = match self.inotify.read(&mut buffer) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return opens,
                Err(e) => panic!("reading inotify events: {e}"),
            };
            let mut at = 0;
            while at + EVENT_HEADER <= n {
                let word =
                    |i: usize| u32::from_ne_bytes(buffer[at + i..at + i + 4].try_into().unwrap());
                let (mask, name_len) = (word(4), word(12) as usize);
                // An event on the watched directory itself carries no name.
                if mask & IN_OPEN != 0 && mask & IN_ISDIR != 0 && name_len == 0 {
                    opens += 1;
                }
                at += EVENT_HEADER + name_len;
            }
        }
    }
}

#[test]
fn the_directory_holding_a_written_file_is_opened_to_sync_the_rename() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("durable_writes");
    let _ = fs::remove_dir_all(&root);
    let (out, cwd) = (root.join("out"), root.join("cwd"));
    fs::create_dir_all(&out).unwrap();
    fs::create_dir_all(&cwd).unwrap();
    std::env::set_current_dir(&cwd).unwrap();

    // A path with a directory part: that directory is synced, not the working directory.
    let mut out_opens = DirectoryOpens::watch(&out);
    let mut cwd_opens = DirectoryOpens::watch(&cwd);
    write_atomic_bytes(&out.join("metrics.jsonl"), b"{}\n").unwrap();
    assert_eq!(fs::read(out.join("metrics.jsonl")).unwrap(), b"{}\n");
    assert_eq!(
        out_opens.take(),
        1,
        "the destination's directory was not opened, so the rename was not synced"
    );
    assert_eq!(
        cwd_opens.take(),
        0,
        "the working directory was synced instead"
    );

    // A bare file name lives in the working directory, which is then the one synced.
    write_atomic_bytes(Path::new("summary.json"), b"{}").unwrap();
    assert_eq!(fs::read(cwd.join("summary.json")).unwrap(), b"{}");
    assert_eq!(
        cwd_opens.take(),
        1,
        "the working directory was not opened, so the rename of a bare file name was not synced"
    );
    assert_eq!(out_opens.take(), 0);

    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    fs::remove_dir_all(&root).unwrap();
}
