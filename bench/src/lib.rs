//! Shared helpers of the benchmark programs.

use std::time::Duration;

/// The value at quantile `q` (0..=1) of some durations, in milliseconds.
pub fn quantile_ms(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort();
    if samples.is_empty() {
        return f64::NAN;
    }
    let index = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[index].as_secs_f64() * 1000.0
}

/// A package folder built by `scripts/build-guests`.
pub fn guest(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/out")
        .join(name);
    assert!(
        dir.join("locker.toml").exists(),
        "{} is missing: run scripts/build-guests",
        dir.display()
    );
    dir
}

/// A copy of a guest package under another service name (and manifest edits).
pub fn renamed_guest(
    dir: &std::path::Path,
    guest_name: &str,
    new_name: &str,
    edit: impl Fn(String) -> String,
) -> std::path::PathBuf {
    let source = guest(guest_name);
    let target = dir.join(new_name);
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
    }
    let manifest = std::fs::read_to_string(target.join("locker.toml")).unwrap();
    let manifest = manifest.replace(
        &format!("name = \"{guest_name}\""),
        &format!("name = \"{new_name}\""),
    );
    std::fs::write(target.join("locker.toml"), edit(manifest)).unwrap();
    target
}
