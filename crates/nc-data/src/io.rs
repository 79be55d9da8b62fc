//! Opening inputs and writing outputs. Every input file is opened through [`open_regular`]
//! (or [`read_regular`]), which refuses FIFOs, devices and sockets before `open` could block
//! on them. Every file nclab writes goes through [`write_atomic`], so a reader never sees a
//! half-written file and an interrupted run leaves the previous version intact.
//!
//! Procedure: write `<dir>/.<name>.<pid>.tmp` in the destination's own directory (so the
//! rename stays on one file system), flush, `fsync` the file, rename it over `path`, then
//! `fsync` the directory (Unix) so the rename itself is durable. On any error the temporary
//! file is removed and the destination is left untouched.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// Opens the input `path` for reading; `expected` says what it should be (for messages).
/// Anything but a regular file (after following symlinks) is refused unopened.
pub fn open_regular(path: &Path, expected: &str) -> Result<File> {
    check_regular(path, expected)?;
    File::open(path).map_err(|e| DataError::open(path, expected, e))
}

/// Reads the whole input `path` (checked as by [`open_regular`]).
pub fn read_regular(path: &Path, expected: &str) -> Result<Vec<u8>> {
    check_regular(path, expected)?;
    fs::read(path).map_err(|e| DataError::open(path, expected, e))
}

fn check_regular(path: &Path, expected: &str) -> Result<()> {
    let metadata = fs::metadata(path).map_err(|e| DataError::open(path, expected, e))?;
    let file_type = metadata.file_type();
    if file_type.is_file() {
        return Ok(());
    }
    let kind = if file_type.is_dir() {
        "a directory"
    } else {
        special_file_kind(&file_type)
    };
    Err(DataError::NotRegularFile {
        path: path.to_path_buf(),
        kind,
        expected: expected.to_string(),
    })
}

#[cfg(unix)]
fn special_file_kind(file_type: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn special_file_kind(_file_type: &fs::FileType) -> &'static str {
    "not a regular file"
}

/// Writes `path` atomically; `write` receives a buffered writer on the temporary file
/// (it is also `Seek`, which zip writers need). Parent directories must already exist.
///
/// ```no_run
/// use std::io::Write;
/// nc_data::io::write_atomic(std::path::Path::new("out/metrics.jsonl"), |w| {
///     writeln!(w, "{{\"epoch\": 1}}")
/// })?;
/// # Ok::<(), nc_data::DataError>(())
/// ```
pub fn write_atomic<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let temp = temp_path(path)?;
    let result = write_then_rename(path, &temp, write);
    if result.is_err() {
        // Best effort: the temporary file may not exist if creating it failed.
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Writes `bytes` to `path` atomically (see [`write_atomic`]).
pub fn write_atomic_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// The temporary file used while writing `path`: same directory, hidden, ends in `.tmp`,
/// and carries the process id so two processes never share one.
pub fn temp_path(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| DataError::Io {
        path: path.to_path_buf(),
        action: "choosing a temporary file name",
        source: io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
    })?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    Ok(path.with_file_name(temp_name))
}

/// Removes the temporary files in `dir` (not below it) that writers of processes no longer
/// running left behind (`.<name>.<pid>.tmp`, as [`temp_path`] names them), returning how
/// many. Those of live processes, this one included, are kept: they may be mid-write.
pub fn remove_stale_temps(dir: &Path) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(DataError::io(dir, "listing the directory", e)),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        if !process_exists(pid) && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// The process id in a temporary file's name `.<name>.<pid>.tmp`.
fn temp_owner(file_name: &str) -> Option<u32> {
    let inner = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (stem, pid) = inner.rsplit_once('.')?;
    if stem.is_empty() {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` exists on this host (a zombie counts as gone). Without `/proc`
/// this cannot be told, and every process is taken to live.
pub fn process_exists(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: Z is a zombie, X dead.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next()),
            Some(Some('Z' | 'X'))
        ),
        Err(_) => !Path::new("/proc/self").exists(),
    }
}

fn write_then_rename<F>(path: &Path, temp: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let file =
        File::create(temp).map_err(|e| DataError::io(temp, "creating the temporary file", e))?;
    let mut writer = BufWriter::new(file);
    write(&mut writer).map_err(|e| DataError::io(path, "writing", e))?;
    let file = writer
        .into_inner()
        .map_err(|e| DataError::io(path, "writing", e.into_error()))?;
    file.sync_all()
        .map_err(|e| DataError::io(temp, "syncing the temporary file", e))?;
    drop(file);
    fs::rename(temp, path)
        .map_err(|e| DataError::io(path, "renaming the temporary file onto", e))?;
    sync_parent_dir(path);
    Ok(())
}

/// Makes the rename durable. Failure is ignored: some file systems refuse to sync directories.
fn sync_parent_dir(path: &Path) {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nc-data-io-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn writes_and_replaces() {
        let dir = scratch_dir("replace");
        let path = dir.join("out.txt");
        write_atomic_bytes(&path, b"first").unwrap();
        write_atomic_bytes(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "temporary file left behind"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failed_write_keeps_old_file_and_removes_temp() {
        let dir = scratch_dir("fail");
        let path = dir.join("out.txt");
        write_atomic_bytes(&path, b"old").unwrap();
        let err = write_atomic(&path, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("disk on fire"))
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("out.txt") && msg.contains("disk on fire"),
            "{msg}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "temporary file left behind"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_directory_is_reported() {
        let path = Path::new("/nonexistent-nc-data-dir/sub/out.txt");
        let msg = write_atomic_bytes(path, b"x").unwrap_err().to_string();
        assert!(msg.contains("nonexistent-nc-data-dir"), "{msg}");
    }

    #[test]
    fn stale_temporary_files_are_removed_and_live_ones_kept() {
        let dir = std::env::temp_dir().join(format!("ncdata-stale-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        assert!(!process_exists(dead));
        let stale = dir.join(format!(".summary.json.{dead}.tmp"));
        let live = temp_path(&dir.join("final.safetensors")).unwrap();
        let keep = dir.join("metrics.jsonl");
        let odd = dir.join(format!(".{dead}.tmp"));
        for p in [&stale, &live, &keep, &odd] {
            fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_stale_temps(&dir).unwrap(), 1);
        assert!(!stale.exists());
        assert!(live.exists() && keep.exists() && odd.exists());
        assert_eq!(remove_stale_temps(&dir.join("absent")).unwrap(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_run_folder_that_is_a_file_is_reported_not_taken_as_empty() {
        // Only a missing folder has no stale files; one that cannot be listed is an error.
        let dir = scratch_dir("not-a-dir");
        let file = dir.join("runs");
        fs::write(&file, b"x").unwrap();
        let msg = remove_stale_temps(&file).unwrap_err().to_string();
        assert!(
            msg.starts_with(&file.display().to_string()) && msg.contains("listing the directory"),
            "{msg}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
