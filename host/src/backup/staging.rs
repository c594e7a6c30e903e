//! A copy of the parts of the root a backup takes, staged under `tmp/` in
//! two passes, so that the services are held still only briefly.
//!
//! The first pass copies everything while the host serves. The second runs
//! in the quiet moment (nothing changes the root meanwhile) and copies again
//! only what may have changed since: every file that is new, whose size,
//! inode or times differ from what the first pass saw, or whose change time
//! is later than a second before the first pass began (a file's change time
//! moves with the kernel's coarse clock, so a write just after the first
//! look may leave it unchanged; the margin covers that); and it removes
//! what was deleted meanwhile. The staged copy is then exactly the root as
//! of the quiet moment, and the archive is written from it at leisure.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::archive::sorted_entries;

/// How much earlier than the first pass a change counts as "may have moved".
const CHANGE_TIME_MARGIN: Duration = Duration::from_secs(1);

/// What a file looked like when it was copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Stamp {
        Stamp {
            inode: metadata.ino(),
            size: metadata.len(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

/// The staged copy; removed when dropped.
pub struct Staging {
    dir: tempfile::TempDir,
    source: PathBuf,
    /// Parts of the root taken (relative paths: folders or files).
    parts: Vec<String>,
    copied: HashMap<PathBuf, Stamp>,
    /// Changes at or after this (seconds, nanoseconds) are copied again.
    recent: (i64, i64),
}

/// What a pass copied.
#[derive(Debug, Default, Clone, Copy)]
pub struct Copied {
    pub files: u64,
    pub bytes: u64,
}

impl Staging {
    /// The first pass: copies `parts` of `source` (those that exist) into a
    /// new folder under `tmp_dir`.
    pub fn copy(source: &Path, parts: &[String], tmp_dir: &Path) -> io::Result<(Staging, Copied)> {
        let since = SystemTime::now() - CHANGE_TIME_MARGIN;
        let since = since
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let dir = tempfile::Builder::new()
            .prefix("backup-")
            .tempdir_in(tmp_dir)?;
        let mut staging = Staging {
            dir,
            source: source.to_path_buf(),
            parts: parts.to_vec(),
            copied: HashMap::new(),
            recent: (since.as_secs() as i64, since.subsec_nanos() as i64),
        };
        let copied = staging.pass(false)?;
        Ok((staging, copied))
    }

    /// The second pass, in the quiet moment: copies what may have changed
    /// since the first and removes what is gone.
    pub fn catch_up(&mut self) -> io::Result<Copied> {
        self.pass(true)
    }

    /// The staged copy.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Files and bytes staged now.
    pub fn size(&self) -> Copied {
        Copied {
            files: self.copied.len() as u64,
            bytes: self.copied.values().map(|stamp| stamp.size).sum(),
        }
    }

    fn pass(&mut self, again: bool) -> io::Result<Copied> {
        let mut copied = Copied::default();
        let mut present = HashSet::new();
        for part in self.parts.clone() {
            let path = PathBuf::from(&part);
            // The folders a part sits in (`services` of `services/notes`) stay.
            present.extend(path.ancestors().skip(1).map(Path::to_path_buf));
            let from = self.source.join(&path);
            match std::fs::symlink_metadata(&from) {
                Ok(metadata) if metadata.is_dir() => {
                    self.walk(&path, &mut present, &mut copied, again)?
                }
                Ok(metadata) if metadata.is_file() => {
                    self.file(&path, &metadata, &mut present, &mut copied, again)?
                }
                Ok(_) => {
                    return Err(io::Error::other(format!(
                        "{} is neither a file nor a folder",
                        from.display()
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if again {
            self.remove_gone(&present)?;
        }
        Ok(copied)
    }

    fn walk(
        &mut self,
        relative: &Path,
        present: &mut HashSet<PathBuf>,
        copied: &mut Copied,
        again: bool,
    ) -> io::Result<()> {
        let from = self.source.join(relative);
        std::fs::create_dir_all(self.dir.path().join(relative))?;
        present.insert(relative.to_path_buf());
        let entries = match sorted_entries(&from) {
            Ok(entries) => entries,
            // A folder removed between the look and the walk (first pass only:
            // the second runs while nothing moves).
            Err(e) if e.kind() == io::ErrorKind::NotFound && !again => return Ok(()),
            Err(e) => return Err(e),
        };
        for (name, is_dir) in entries {
            let inner = relative.join(&name);
            if is_dir {
                self.walk(&inner, present, copied, again)?;
            } else {
                let metadata = match std::fs::symlink_metadata(self.source.join(&inner)) {
                    Ok(metadata) => metadata,
                    Err(e) if e.kind() == io::ErrorKind::NotFound && !again => continue,
                    Err(e) => return Err(e),
                };
                self.file(&inner, &metadata, present, copied, again)?;
            }
        }
        Ok(())
    }

    fn file(
        &mut self,
        relative: &Path,
        metadata: &std::fs::Metadata,
        present: &mut HashSet<PathBuf>,
        copied: &mut Copied,
        again: bool,
    ) -> io::Result<()> {
        present.insert(relative.to_path_buf());
        let stamp = Stamp::of(metadata);
        let unchanged =
            again && self.copied.get(relative) == Some(&stamp) && stamp.changed < self.recent;
        if unchanged {
            return Ok(());
        }
        let to = self.dir.path().join(relative);
        match std::fs::copy(self.source.join(relative), &to) {
            Ok(bytes) => {
                copied.files += 1;
                copied.bytes += bytes;
                self.copied.insert(relative.to_path_buf(), stamp);
                Ok(())
            }
            // Deleted between the look and the copy (first pass only).
            Err(e) if e.kind() == io::ErrorKind::NotFound && !again => Ok(()),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("cannot copy {}: {e}", self.source.join(relative).display()),
            )),
        }
    }

    /// Removes from the staged copy what the root no longer has.
    fn remove_gone(&mut self, present: &HashSet<PathBuf>) -> io::Result<()> {
        let gone: Vec<PathBuf> = self
            .copied
            .keys()
            .filter(|path| !present.contains(*path))
            .cloned()
            .collect();
        for path in gone {
            self.copied.remove(&path);
            let _ = std::fs::remove_file(self.dir.path().join(&path));
        }
        // Folders: deepest first, so a removed tree goes whole.
        let mut folders = Vec::new();
        collect_folders(self.dir.path(), Path::new(""), &mut folders)?;
        folders.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
        for folder in folders {
            if !present.contains(&folder) {
                std::fs::remove_dir_all(self.dir.path().join(&folder))?;
            }
        }
        Ok(())
    }
}

fn collect_folders(base: &Path, relative: &Path, into: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(base.join(relative))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            let inner = relative.join(entry.file_name());
            collect_folders(base, &inner, into)?;
            into.push(inner);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        fn walk(base: &Path, dir: &Path, files: &mut Vec<(String, Vec<u8>)>) {
            for (name, is_dir) in sorted_entries(dir).unwrap() {
                let path = dir.join(&name);
                if is_dir {
                    walk(base, &path, files);
                } else {
                    let relative = path.strip_prefix(base).unwrap().display().to_string();
                    files.push((relative, std::fs::read(&path).unwrap()));
                }
            }
        }
        walk(dir, dir, &mut files);
        files
    }

    #[test]
    fn the_second_pass_catches_every_change_made_after_the_first() {
        let root = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let services = root.path().join("services");
        std::fs::create_dir_all(services.join("a/deep")).unwrap();
        std::fs::create_dir_all(services.join("b")).unwrap();
        std::fs::write(services.join("a/kept.json"), "{}").unwrap();
        std::fs::write(services.join("a/deep/changed.json"), "[1]").unwrap();
        std::fs::write(services.join("b/removed.json"), "x").unwrap();
        std::fs::write(root.path().join("host.toml"), "").unwrap();

        let parts = vec!["services".to_string(), "host.toml".into(), "absent".into()];
        let (mut one, _) =
            Staging::copy(root.path(), &["services/a".to_string()], tmp.path()).unwrap();
        one.catch_up().unwrap();
        assert_eq!(
            read_tree(&one.dir().join("services/a")),
            read_tree(&services.join("a"))
        );
        let (mut staging, first) = Staging::copy(root.path(), &parts, tmp.path()).unwrap();
        assert_eq!(first.files, 4);

        // Same size, written at once: only the change time can tell.
        std::fs::write(services.join("a/deep/changed.json"), "[2]").unwrap();
        std::fs::write(services.join("a/new.json"), "new").unwrap();
        std::fs::remove_dir_all(services.join("b")).unwrap();
        staging.catch_up().unwrap();

        let mut expected = read_tree(root.path());
        expected.sort();
        let mut staged = read_tree(staging.dir());
        staged.sort();
        assert_eq!(staged, expected);
        assert_eq!(staging.size().files, 4);
    }
}
