//! A pulled package as `locker install` checks any: written to a scratch
//! folder as the publisher's folder was, and read back.

use std::path::{Component, Path};

use anyhow::{Context, Result, bail};
use locker_registry::artifact::PackageFiles;

use crate::package::{Manifest, Package};

pub fn package_of(files: &PackageFiles, component: &[u8]) -> Result<Package> {
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    std::fs::write(dir.join("locker.toml"), &files.manifest)?;
    let manifest = Manifest::parse(&files.manifest, "the pulled locker.toml")?;
    if manifest.name != files.name {
        bail!(
            "the pulled package is signed as {:?} but its locker.toml names {:?}",
            files.name,
            manifest.name
        );
    }
    if manifest.version.to_string() != files.version {
        bail!(
            "the pulled package is signed as version {} but its locker.toml says {}",
            files.version,
            manifest.version
        );
    }
    let named: Vec<&str> = manifest
        .types
        .values()
        .filter_map(|definition| definition.schema.as_deref())
        .collect();
    for (path, schema) in &files.schemas {
        let relative = Path::new(path);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
        {
            bail!("the pulled package names a schema outside its folder: {path:?}");
        }
        if !named.contains(&path.as_str()) || *path == "locker.toml" || *path == manifest.component
        {
            bail!(
                "the pulled package carries a file its locker.toml does not name as a schema: {path:?}"
            );
        }
        let target = dir.join(relative);
        std::fs::create_dir_all(target.parent().expect("a file has a parent"))?;
        std::fs::write(target, schema)?;
    }
    let component_path = dir.join(&manifest.component);
    if component_path.parent() != Some(dir) {
        bail!("the pulled locker.toml names its component outside its folder");
    }
    std::fs::write(&component_path, component)?;
    let package =
        Package::read(dir, None).context("the pulled package is not one a locker installs")?;
    // What was read back is what was checked (nothing above may replace it).
    if package.manifest.name != manifest.name || package.manifest.version != manifest.version {
        bail!("the pulled package changed while it was unpacked");
    }
    Ok(package)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(manifest: &str, schemas: &[(&str, &str)]) -> PackageFiles {
        PackageFiles {
            name: "notes".into(),
            version: "0.1.0".into(),
            manifest: manifest.into(),
            schemas: schemas
                .iter()
                .map(|(p, s)| (p.to_string(), s.to_string()))
                .collect(),
        }
    }

    const MANIFEST: &str =
        "name = \"notes\"\nversion = \"0.1.0\"\nkind = \"app\"\ndescription = \"d\"\n";

    #[test]
    fn a_pulled_package_cannot_write_outside_its_scratch_folder() {
        let component = b"not wasm";
        let manifest = format!("{MANIFEST}component = \"notes.wasm\"\n");
        let escape = files(&manifest, &[("../../evil.json", "{}")]);
        let refused = package_of(&escape, component).err().unwrap().to_string();
        assert!(refused.contains("outside its folder"), "{refused}");
        let absolute = files(&manifest, &[("/tmp/evil.json", "{}")]);
        assert!(package_of(&absolute, component).is_err());
        let outside = files(&format!("{MANIFEST}component = \"../notes.wasm\"\n"), &[]);
        assert!(package_of(&outside, component).is_err());
        let renamed = files(
            &manifest.replace("name = \"notes\"", "name = \"bank\""),
            &[],
        );
        let refused = package_of(&renamed, component).err().unwrap().to_string();
        assert!(refused.contains("signed as \"notes\""), "{refused}");
        let overwrite = files(&manifest, &[("locker.toml", "name = \"bank\"")]);
        let refused = package_of(&overwrite, component).err().unwrap().to_string();
        assert!(refused.contains("does not name as a schema"), "{refused}");
        let other_version = files(&manifest.replace("0.1.0", "0.9.0"), &[]);
        let refused = package_of(&other_version, component)
            .err()
            .unwrap()
            .to_string();
        assert!(refused.contains("signed as version 0.1.0"), "{refused}");
    }
}
