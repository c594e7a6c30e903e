//! The archive that backups and exports are: a tar stream in one zstd frame
//! (so `tar --zstd -xf` opens it, and the owner's files are plain files).
//!
//! ```text
//! locker-backup.json        first: what this is (a root or one service), made when, by
//!                           which Locker, and whether secrets are in it
//! secrets.key.age           the root's secrets key under the owner's passphrase (age)
//! locker.db                 the database, as of the snapshot
//! packages/ services/ ...   the files, in a stable order
//! locker-backup.sums.json   last: every file's size and BLAKE3 hash
//! ```
//!
//! The list of sums comes last so that an archive can be written as a
//! stream; its absence is how a truncated archive shows. A reader checks the
//! zstd frame's own checksum, every tar header, every path (no entry may
//! leave its folder, and only files and folders are taken) and every file's
//! hash, and refuses the archive at the first thing wrong, naming it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use super::Progress;

/// The first entry of every archive.
pub const HEADER_NAME: &str = "locker-backup.json";
/// The last entry of every archive.
pub const SUMS_NAME: &str = "locker-backup.sums.json";
/// The root's secrets key, sealed under the owner's passphrase.
pub const SEALED_KEY_NAME: &str = "secrets.key.age";
const FORMAT: &str = "locker-backup";
const VERSION: u32 = 1;
/// zstd's level 3: fast enough to keep up with a disk, a third of the size
/// of JSON.
const LEVEL: i32 = 3;
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The header and the sums are small; a larger one is not ours.
const MAX_HEADER: u64 = 64 * 1024;
const MAX_SUMS: u64 = 256 * 1024 * 1024;

/// What an archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArchiveKind {
    /// A whole locker root (`locker backup`).
    Root,
    /// One service's folder (`locker export`).
    Service,
}

/// Whether the services' secrets travel in an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretsInArchive {
    /// The root's secrets key, sealed under a passphrase (`secrets.key.age`).
    Sealed,
    /// Left out by the owner (`--no-secrets`): no key, and no sealed value.
    LeftOut,
    /// The root had none.
    None,
}

/// The archive's first entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArchiveHeader {
    pub format: String,
    pub version: u32,
    pub kind: ArchiveKind,
    /// The service, for an export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// When the snapshot was taken (RFC 3339).
    pub created: String,
    /// The Locker that made it.
    pub made_by: String,
    pub secrets: SecretsInArchive,
    /// Files, and the bytes in them, as the snapshot found them.
    pub files: u64,
    pub bytes: u64,
}

impl ArchiveHeader {
    pub fn new(kind: ArchiveKind, service: Option<String>, secrets: SecretsInArchive) -> Self {
        ArchiveHeader {
            format: FORMAT.into(),
            version: VERSION,
            kind,
            service,
            created: crate::clock::now_rfc3339(),
            made_by: format!("locker {}", env!("CARGO_PKG_VERSION")),
            secrets,
            files: 0,
            bytes: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileSum {
    path: String,
    size: u64,
    blake3: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Sums {
    files: Vec<FileSum>,
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read the archive: {0}")]
    Unreadable(#[source] io::Error),
    #[error("this is not a Locker archive: {0}")]
    NotAnArchive(String),
    #[error(
        "the archive is truncated: it ends after {files} files, before its list of checksums \
         (was it copied completely?)"
    )]
    Truncated { files: usize },
    #[error("the archive is damaged: {0}")]
    Damaged(String),
    #[error("the archive is damaged: {path:?} does not match its checksum")]
    Mismatch { path: String },
    #[error("the archive holds {path:?}, a path that leaves its folder or is not allowed there")]
    UnsafePath { path: String },
    #[error("the archive holds {path:?}, which is a {kind}: only files and folders are taken")]
    NotAFile { path: String, kind: String },
    #[error("the archive was made by a newer Locker (format {0}); upgrade Locker to read it")]
    TooNew(u32),
}

impl ArchiveError {
    /// An error from reading the stream: cut short, or not what zstd wrote.
    fn from_stream(error: io::Error, files: usize) -> ArchiveError {
        if error.kind() == io::ErrorKind::UnexpectedEof
            || error.to_string().contains("incomplete frame")
        {
            ArchiveError::Truncated { files }
        } else {
            ArchiveError::Damaged(error.to_string())
        }
    }
}

/// Writes an archive to `out`: the header first, then files, then the sums.
pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<zstd::stream::write::Encoder<'static, W>>,
    sums: Vec<FileSum>,
    progress: std::sync::Arc<Progress>,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(
        out: W,
        header: &ArchiveHeader,
        progress: std::sync::Arc<Progress>,
    ) -> io::Result<Self> {
        let mut encoder = zstd::stream::write::Encoder::new(out, LEVEL)?;
        encoder.include_checksum(true)?;
        let mut writer = ArchiveWriter {
            tar: tar::Builder::new(encoder),
            sums: Vec::new(),
            progress,
        };
        let header = serde_json::to_vec_pretty(header).map_err(io::Error::other)?;
        writer.append(HEADER_NAME, &mut &header[..], header.len() as u64, 0o644)?;
        Ok(writer)
    }

    /// Adds `bytes` as the file `path` (and to the sums).
    pub fn add_bytes(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.add(path, &mut &bytes[..], bytes.len() as u64, 0o600)
    }

    /// Adds the file at `source` as `path`.
    pub fn add_file(&mut self, path: &str, source: &Path) -> io::Result<()> {
        let file = File::open(source)?;
        let metadata = file.metadata()?;
        let mode = mode_of(&metadata);
        self.add(path, &mut BufReader::new(file), metadata.len(), mode)
    }

    /// Adds the folder `source` as `path`, and everything in it, in name order.
    pub fn add_tree(&mut self, path: &str, source: &Path) -> io::Result<()> {
        self.add_dir(path)?;
        for (name, is_dir) in sorted_entries(source)? {
            let inner = format!("{path}/{name}");
            if is_dir {
                self.add_tree(&inner, &source.join(&name))?;
            } else {
                self.add_file(&inner, &source.join(&name))?;
            }
        }
        Ok(())
    }

    fn add_dir(&mut self, path: &str) -> io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_mtime(now_secs());
        self.tar
            .append_data(&mut header, format!("{path}/"), io::empty())
    }

    fn add(&mut self, path: &str, data: &mut dyn Read, size: u64, mode: u32) -> io::Result<()> {
        let mut hashing = Hashing::new(data.take(size));
        self.append(path, &mut hashing, size, mode)?;
        if hashing.read != size {
            return Err(io::Error::other(format!(
                "{path} changed while it was archived"
            )));
        }
        self.progress.advance(size);
        self.sums.push(FileSum {
            path: path.to_string(),
            size,
            blake3: hashing.hasher.finalize().to_hex().to_string(),
        });
        Ok(())
    }

    fn append(&mut self, path: &str, data: &mut dyn Read, size: u64, mode: u32) -> io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(now_secs());
        self.tar.append_data(&mut header, path, data)
    }

    /// Writes the sums and closes the archive; returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        let sums = serde_json::to_vec(&Sums {
            files: std::mem::take(&mut self.sums),
        })
        .map_err(io::Error::other)?;
        self.append(SUMS_NAME, &mut &sums[..], sums.len() as u64, 0o644)?;
        let encoder = self.tar.into_inner()?;
        encoder.finish()
    }
}

/// What one entry of an archive is.
pub enum Entry<'a> {
    Dir,
    File(&'a mut dyn Read),
}

/// Reads an archive from start to end, checking everything, and shows each
/// folder and file (by its path inside the archive) to `visit`; the files'
/// contents are checked against the sums as `visit` reads them (what it
/// leaves unread is read for it). `allowed` says which paths an archive of
/// its kind may hold. Returns the header once the whole archive checked out.
pub fn read(
    path: &Path,
    progress: &Progress,
    allowed: impl Fn(&ArchiveHeader, &Path) -> bool,
    mut visit: impl FnMut(&ArchiveHeader, &str, Entry<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<ArchiveHeader> {
    let mut file = File::open(path).map_err(ArchiveError::Unreadable)?;
    let mut magic = [0u8; 4];
    match file.read_exact(&mut magic) {
        Ok(()) if magic == ZSTD_MAGIC => {}
        Ok(()) => {
            return Err(ArchiveError::NotAnArchive("it is not zstd-compressed".into()).into());
        }
        Err(_) => return Err(ArchiveError::NotAnArchive("it is empty or nearly".into()).into()),
    }
    let file = File::open(path).map_err(ArchiveError::Unreadable)?;
    let counted = Counting {
        inner: BufReader::with_capacity(256 * 1024, file),
        progress,
    };
    let decoder = zstd::stream::read::Decoder::with_buffer(counted)
        .map_err(|e| ArchiveError::Damaged(e.to_string()))?;
    let mut archive = tar::Archive::new(decoder);
    let mut entries = archive
        .entries()
        .map_err(|e| ArchiveError::from_stream(e, 0))?;

    let header = read_header(&mut entries)?;
    let mut seen: Vec<FileSum> = Vec::new();
    let mut sums: Option<Sums> = None;
    for entry in entries.by_ref() {
        let mut entry = entry.map_err(|e| ArchiveError::from_stream(e, seen.len()))?;
        let name = entry_name(&entry)?;
        if sums.is_some() {
            return Err(
                ArchiveError::Damaged(format!("{name:?} comes after the checksums")).into(),
            );
        }
        if name == SUMS_NAME {
            let text = read_small(&mut entry, MAX_SUMS, seen.len())?;
            sums = Some(serde_json::from_slice(&text).map_err(|e| {
                ArchiveError::Damaged(format!("its list of checksums does not parse: {e}"))
            })?);
            continue;
        }
        let trimmed = name.trim_end_matches('/');
        if !is_plain_relative(trimmed) || !allowed(&header, Path::new(trimmed)) {
            return Err(ArchiveError::UnsafePath { path: name }.into());
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory => visit(&header, trimmed, Entry::Dir)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                let mut hashing = Hashing::new(&mut entry);
                let visited = visit(&header, trimmed, Entry::File(&mut hashing));
                io::copy(&mut hashing, &mut io::sink())
                    .map_err(|e| ArchiveError::from_stream(e, seen.len()))?;
                if hashing.read != size {
                    return Err(ArchiveError::Truncated { files: seen.len() }.into());
                }
                visited?;
                seen.push(FileSum {
                    path: trimmed.to_string(),
                    size,
                    blake3: hashing.hasher.finalize().to_hex().to_string(),
                });
            }
            other => {
                return Err(ArchiveError::NotAFile {
                    path: name,
                    kind: format!("{other:?}").to_lowercase(),
                }
                .into());
            }
        }
    }
    let Some(sums) = sums else {
        return Err(ArchiveError::Truncated { files: seen.len() }.into());
    };
    // The rest of the stream: zstd checks its frame's checksum at its end.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| ArchiveError::from_stream(e, seen.len()))?;
    check_sums(&seen, &sums.files)?;
    Ok(header)
}

/// Reads only an archive's header, checked as `read` checks it (to know
/// what an archive is, and whether to ask for a passphrase, before reading
/// all of it).
pub fn peek(path: &Path) -> Result<ArchiveHeader, ArchiveError> {
    let file = File::open(path).map_err(ArchiveError::Unreadable)?;
    let decoder = zstd::stream::read::Decoder::new(file)
        .map_err(|e| ArchiveError::NotAnArchive(e.to_string()))?;
    let mut archive = tar::Archive::new(decoder);
    let mut entries = archive
        .entries()
        .map_err(|e| ArchiveError::NotAnArchive(e.to_string()))?;
    read_header(&mut entries)
}

fn read_header<R: Read>(entries: &mut tar::Entries<'_, R>) -> Result<ArchiveHeader, ArchiveError> {
    let mut first = match entries.next() {
        Some(entry) => entry.map_err(|e| ArchiveError::from_stream(e, 0))?,
        None => return Err(ArchiveError::NotAnArchive("it holds nothing".into())),
    };
    if entry_name(&first)? != HEADER_NAME {
        return Err(ArchiveError::NotAnArchive(format!(
            "it does not begin with {HEADER_NAME}"
        )));
    }
    let text = read_small(&mut first, MAX_HEADER, 0)?;
    let header: ArchiveHeader = serde_json::from_slice(&text)
        .map_err(|e| ArchiveError::NotAnArchive(format!("{HEADER_NAME} does not parse: {e}")))?;
    if header.format != FORMAT {
        return Err(ArchiveError::NotAnArchive(format!(
            "its format is {:?}",
            header.format
        )));
    }
    if header.version > VERSION {
        return Err(ArchiveError::TooNew(header.version));
    }
    Ok(header)
}

fn entry_name<R: Read>(entry: &tar::Entry<'_, R>) -> Result<String, ArchiveError> {
    let bytes = entry.path_bytes();
    String::from_utf8(bytes.into_owned()).map_err(|e| ArchiveError::UnsafePath {
        path: String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

fn read_small(entry: &mut dyn Read, max: u64, files: usize) -> Result<Vec<u8>, ArchiveError> {
    let mut text = Vec::new();
    entry
        .take(max + 1)
        .read_to_end(&mut text)
        .map_err(|e| ArchiveError::from_stream(e, files))?;
    if text.len() as u64 > max {
        return Err(ArchiveError::Damaged("an index entry is too large".into()));
    }
    Ok(text)
}

/// Whether `path` is relative and made of plain names only (no `..`, `.`,
/// root or prefix): joined to a folder, it stays inside it.
pub fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && Path::new(path)
            .components()
            .all(|component| matches!(component, Component::Normal(_)))
}

fn check_sums(seen: &[FileSum], listed: &[FileSum]) -> Result<(), ArchiveError> {
    let listed_by_path: BTreeMap<&str, &FileSum> =
        listed.iter().map(|sum| (sum.path.as_str(), sum)).collect();
    for sum in seen {
        match listed_by_path.get(sum.path.as_str()) {
            Some(listed) if *listed == sum => {}
            Some(_) => {
                return Err(ArchiveError::Mismatch {
                    path: sum.path.clone(),
                });
            }
            None => {
                return Err(ArchiveError::Damaged(format!(
                    "{:?} is not in its list of checksums",
                    sum.path
                )));
            }
        }
    }
    if seen.len() != listed.len() {
        let seen: std::collections::BTreeSet<&str> =
            seen.iter().map(|sum| sum.path.as_str()).collect();
        let missing = listed
            .iter()
            .find(|sum| !seen.contains(sum.path.as_str()))
            .map(|sum| sum.path.clone())
            .unwrap_or_default();
        return Err(ArchiveError::Damaged(format!(
            "{missing:?} is listed but missing"
        )));
    }
    Ok(())
}

/// The names in a folder, in order, and whether each is a folder; anything
/// but files and folders (a link, a socket) is an error naming it.
pub fn sorted_entries(dir: &Path) -> io::Result<Vec<(String, bool)>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let name = entry.file_name().into_string().map_err(|name| {
            io::Error::other(format!(
                "{} has a name that is not UTF-8: {name:?}",
                dir.display()
            ))
        })?;
        if !kind.is_dir() && !kind.is_file() {
            return Err(io::Error::other(format!(
                "{} is neither a file nor a folder",
                dir.join(&name).display()
            )));
        }
        names.push((name, kind.is_dir()));
    }
    names.sort();
    Ok(names)
}

fn mode_of(metadata: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o777
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
    read: u64,
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: blake3::Hasher::new(),
            read: 0,
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Counts the archive's bytes read, for a progress bar over its size.
struct Counting<'p, R> {
    inner: R,
    progress: &'p Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

impl<R: io::BufRead> io::BufRead for Counting<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amount: usize) {
        self.progress.advance(amount as u64);
        self.inner.consume(amount)
    }
}
