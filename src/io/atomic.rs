//! Saves that never leave a half-written file: write beside the target, then rename.

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::{Error, Result};

/// Write `path` atomically: `fill` writes into a temporary file in the same folder, which
/// replaces `path` only once `fill` and the flush have succeeded.
pub fn write_atomically(path: &Path, fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let tmp = temporary_beside(path)?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        fill(&mut w).map_err(|e| Error::io(path, e))?;
        w.flush().map_err(|e| Error::io(path, e))?;
    }
    persist(tmp, path)
}

/// Write `path` atomically by positioned writes: `fill` gets a temporary file of `len` bytes
/// (sparse until written) in the same folder, which replaces `path` once `fill` succeeds. For
/// writers that produce a file out of order (a BSQ cube from row blocks).
pub fn fill_atomically(path: &Path, len: u64, fill: impl FnOnce(&std::fs::File) -> std::io::Result<()>) -> Result<()> {
    let file = AtomicFile::create(path, len)?;
    fill(file.file()).map_err(|e| Error::io(path, e))?;
    file.commit()
}

/// A file being written atomically by positioned writes: a temporary file beside `path`,
/// `len` bytes long, that replaces `path` on [`AtomicFile::commit`] and is removed if dropped
/// uncommitted (an error, a cancelled job).
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    path: std::path::PathBuf,
}

impl AtomicFile {
    pub fn create(path: &Path, len: u64) -> Result<AtomicFile> {
        let tmp = temporary_beside(path)?;
        tmp.as_file().set_len(len).map_err(|e| Error::io(path, e))?;
        Ok(AtomicFile { tmp, path: path.to_path_buf() })
    }

    pub fn file(&self) -> &std::fs::File {
        self.tmp.as_file()
    }

    /// The path this file will replace.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flush to disk and rename over `path`.
    pub fn commit(self) -> Result<()> {
        persist(self.tmp, &self.path)
    }
}

/// An empty temporary file beside `path` with a saved file's usual permissions.
fn temporary_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".spectral-studio-").suffix(".tmp");
    // A temporary file is private (0600) by default; a saved file should get the usual
    // permissions (0666 less the umask), as if it had been created directly.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))
}

/// Flush `tmp` to disk and rename it to `path`.
fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Write a whole byte buffer atomically.
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |w| w.write_all(bytes))
}

/// Refuse to write over the file a cube was read from.
pub fn refuse_overwriting_source(source: Option<&Path>, target: &Path) -> Result<()> {
    let Some(source) = source else { return Ok(()) };
    let same = match (source.canonicalize(), target.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::invalid(format!(
            "{}: refusing to write over the input file; choose another output path",
            target.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_the_old_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        std::fs::write(&p, b"old").unwrap();
        let r = write_atomically(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        // and no temporary file is left behind
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        write_bytes_atomically(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
    }

    #[cfg(unix)]
    #[test]
    fn saved_files_are_not_private_temporaries() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        write_bytes_atomically(&p, b"x").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_ne!(mode & 0o044, 0, "mode {mode:o}: others cannot read a saved file");
    }

    #[test]
    fn refuses_to_overwrite_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cube.npy");
        std::fs::write(&p, b"x").unwrap();
        assert!(refuse_overwriting_source(Some(&p), &p).is_err());
        assert!(refuse_overwriting_source(Some(&p), &dir.path().join("other.npy")).is_ok());
    }
}
