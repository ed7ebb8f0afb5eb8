//! Files are written atomically: into a temporary sibling, flushed to disk,
//! then renamed over the target, so a crash or an error never leaves a
//! half-written file and never loses the previous one.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Write through `fill` into a temporary sibling file, fsync it, and rename it
/// over `path`. The temporary file is removed on any error.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<&File>) -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(temp_name(
        &file_name.to_string_lossy(),
        std::process::id(),
        n,
    ));
    let result = (|| {
        let file = File::create(&tmp)?;
        {
            let mut w = BufWriter::with_capacity(1 << 20, &file);
            fill(&mut w)?;
            w.flush()?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Write `text` to `path` atomically.
pub fn write_text(path: &Path, text: &str) -> io::Result<()> {
    write_atomic(path, |w| w.write_all(text.as_bytes()))
}

/// The temporary sibling of `file_name`: `.NAME.PID.N.tmp` (hidden, and
/// naming the process that writes it, so that [`sweep_stale`] can tell a
/// dead writer's leftovers from a live one's).
fn temp_name(file_name: &str, pid: u32, n: u64) -> String {
    format!(".{file_name}.{pid}.{n}.tmp")
}

/// Remove from `dir` the temporary files of writers that no longer run (a
/// killed process leaves them); returns how many were removed.
pub fn sweep_stale(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut swept = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = stale_temp_owner(&name)
            && !process_alive(pid)
            && std::fs::remove_file(entry.path()).is_ok()
        {
            swept += 1;
        }
    }
    swept
}

/// The process id in a name made by [`temp_name`], if `name` is one.
fn stale_temp_owner(name: &str) -> Option<i32> {
    let rest = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = rest.rsplitn(3, '.');
    parts.next()?.parse::<u64>().ok()?;
    let pid = parts.next()?.parse::<i32>().ok()?;
    parts.next().filter(|n| !n.is_empty())?;
    Some(pid)
}

fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    if pid as u32 == std::process::id() {
        return true;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_file_names_give_their_owner() {
        assert_eq!(
            stale_temp_owner(&temp_name("warped.nii.gz", 4242, 0)),
            Some(4242)
        );
        assert_eq!(stale_temp_owner(".warped.nii.gz.4242.0.tmp"), Some(4242));
        assert_eq!(stale_temp_owner(".run.json.17.3.tmp"), Some(17));
        for not_ours in [
            "warped.nii.gz",
            ".x.tmp",
            ".a.b.tmp",
            "..1.2.tmp",
            ".run.json.17.3",
        ] {
            assert_eq!(stale_temp_owner(not_ours), None, "{not_ours}");
        }
    }
}
