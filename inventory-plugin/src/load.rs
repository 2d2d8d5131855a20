//! Reading site files from disk: one file, or every site file of a directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{FileError, SiteError};
use crate::planned::PlannedSite;
use crate::site::{SiteFile, MAX_SITE_FILE_BYTES};

/// Reads and plans the site file at `path`, or every `*.yml`/`*.yaml` file of the directory at
/// `path` (sorted by file name). Sites of one directory must differ in name and domain.
pub fn load(path: &Path) -> Result<Vec<PlannedSite>, FileError> {
    let files = site_files(path).map_err(|e| e.in_file(path))?;
    // Reading and planning are independent per file: spread them over the cores for a
    // provider's hundreds of sites. Errors are reported in file order either way.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(files.len().div_ceil(MIN_FILES_PER_THREAD))
        .max(1);
    let planned: Vec<Result<PlannedSite, FileError>> = if threads == 1 {
        files.iter().map(|f| load_one(f)).collect()
    } else {
        let chunk = files.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = files
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || part.iter().map(|f| load_one(f)).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    };
    if planned.len() != files.len() {
        return Err(SiteError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::other("a site-file worker thread panicked"),
        }
        .in_file(path));
    }

    let mut sites: Vec<(&PathBuf, PlannedSite)> = Vec::with_capacity(files.len());
    let mut by_name: HashMap<String, usize> = HashMap::with_capacity(files.len());
    let mut by_domain: HashMap<String, usize> = HashMap::with_capacity(files.len());
    for (file, result) in files.iter().zip(planned) {
        let site = result?;
        for (what, key, seen) in [
            ("name", site.topology.name.clone(), &mut by_name),
            ("domain", site.topology.domain.clone(), &mut by_domain),
        ] {
            if let Some(&first) = seen.get(&key) {
                return Err(SiteError::DuplicateSite {
                    first: sites[first].0.clone(),
                    second: file.clone(),
                    what,
                    value: key,
                }
                .in_file(file));
            }
            seen.insert(key, sites.len());
        }
        sites.push((file, site));
    }
    Ok(sites.into_iter().map(|(_, s)| s).collect())
}

/// Below this many files per thread, threads cost more than they save.
const MIN_FILES_PER_THREAD: usize = 32;

fn load_one(file: &Path) -> Result<PlannedSite, FileError> {
    let text = read_limited(file).map_err(|e| e.in_file(file))?;
    let parsed = SiteFile::parse(&text, file).map_err(|e| e.in_file(file))?;
    PlannedSite::plan(&parsed).map_err(|e| e.in_file(file))
}

/// The text of a site file, refused without reading it whole when it is larger than
/// [`MAX_SITE_FILE_BYTES`].
fn read_limited(file: &Path) -> Result<String, SiteError> {
    use std::io::Read;
    let read_err = |source| SiteError::Read {
        path: file.to_path_buf(),
        source,
    };
    let too_large = |size| SiteError::TooLarge {
        path: file.to_path_buf(),
        size,
        limit: MAX_SITE_FILE_BYTES,
    };
    let handle = std::fs::File::open(file).map_err(read_err)?;
    let size = handle.metadata().map_err(read_err)?.len();
    if size > MAX_SITE_FILE_BYTES {
        return Err(too_large(size));
    }
    // The size can grow after the check (or be 0 for a pipe): read one byte past the limit.
    let mut bytes = Vec::new();
    handle
        .take(MAX_SITE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_SITE_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text: {e}"),
        ))
    })
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
