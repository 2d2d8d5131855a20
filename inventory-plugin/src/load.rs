//! Reading site files from disk: one file, or every site file of a directory.

use std::path::{Path, PathBuf};

use crate::error::{FileError, SiteError};
use crate::planned::PlannedSite;
use crate::site::SiteFile;

/// Reads and plans the site file at `path`, or every `*.yml`/`*.yaml` file of the directory at
/// `path` (sorted by file name). Sites of one directory must differ in name and domain.
pub fn load(path: &Path) -> Result<Vec<PlannedSite>, FileError> {
    let files = site_files(path).map_err(|e| e.in_file(path))?;
    let mut sites: Vec<(PathBuf, PlannedSite)> = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| {
            SiteError::Read {
                path: file.clone(),
                source,
            }
            .in_file(&file)
        })?;
        let parsed = SiteFile::parse(&text, &file).map_err(|e| e.in_file(&file))?;
        let planned = PlannedSite::plan(&parsed).map_err(|e| e.in_file(&file))?;
        for (other_path, other) in &sites {
            let clash = if other.topology.name == planned.topology.name {
                Some(("name", planned.topology.name.clone()))
            } else if other.topology.domain == planned.topology.domain {
                Some(("domain", planned.topology.domain.clone()))
            } else {
                None
            };
            if let Some((what, value)) = clash {
                return Err(SiteError::DuplicateSite {
                    first: other_path.clone(),
                    second: file.clone(),
                    what,
                    value,
                }
                .in_file(&file));
            }
        }
        sites.push((file, planned));
    }
    Ok(sites.into_iter().map(|(_, s)| s).collect())
}

fn site_files(path: &Path) -> Result<Vec<PathBuf>, SiteError> {
    let read_err = |source| SiteError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let p = entry.path();
        let is_yaml = matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yml") | Some("yaml")
        );
        if is_yaml && p.is_file() {
            files.push(p);
        }
    }
    if files.is_empty() {
        return Err(SiteError::EmptyDirectory {
            path: path.to_path_buf(),
        });
    }
    files.sort();
    Ok(files)
}
