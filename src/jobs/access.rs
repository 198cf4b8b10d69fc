//! Which local paths a server's jobs may read and write. A server reachable from other machines
//! runs SQL from whoever holds its token: a `filesystem` table must not read `/etc/shadow` or
//! write over the server's own state, so its paths (and a local checkpoint directory) must lie in
//! one of the directories the server allows (`--allow-dir`).

use std::path::{Component, Path, PathBuf};

use crate::sql::PlannedScript;

/// The directories local paths must lie in; `None` allows any path (a loopback server without
/// `--allow-dir`).
#[derive(Debug, Clone, Default)]
pub struct LocalAccess {
    allowed: Option<Vec<PathBuf>>,
}

impl LocalAccess {
    /// Any local path.
    pub fn any() -> Self {
        LocalAccess { allowed: None }
    }

    /// Only paths inside `dirs` (none at all when `dirs` is empty).
    pub fn only(dirs: &[PathBuf]) -> Self {
        let allowed = dirs
            .iter()
            .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| absolute(d)))
            .collect();
        LocalAccess {
            allowed: Some(allowed),
        }
    }

    /// Every local path of `planned` checked; the error names the table, the path and where it
    /// is written (file:line:col).
    pub fn check(&self, planned: &PlannedScript) -> Result<(), String> {
        let Some(allowed) = &self.allowed else {
            return Ok(());
        };
        let dirs = if allowed.is_empty() {
            "none: start it with --allow-dir DIR".to_string()
        } else {
            let names: Vec<String> = allowed.iter().map(|d| d.display().to_string()).collect();
            names.join(", ")
        };
        for local in &planned.local_paths {
            if !allowed_path(allowed, &local.path) {
                let mut e = local.at.clone();
                e.message = format!(
                    "table `{}` uses {}, outside the directories this server allows ({dirs})",
                    local.table, local.path
                );
                return Err(e.to_string());
            }
        }
        if let Some(dir) = &planned.settings.checkpoint.dir
            && !dir.contains("://")
            && !allowed_path(allowed, dir)
        {
            return Err(format!(
                "checkpoint directory {dir} is outside the directories this server allows ({dirs})"
            ));
        }
        Ok(())
    }
}

/// Whether `path` (a file, directory or glob, maybe `file://`) lies inside one of `allowed`,
/// with symbolic links and `..` resolved.
fn allowed_path(allowed: &[PathBuf], path: &str) -> bool {
    let path = path.strip_prefix("file://").unwrap_or(path);
    // A glob's fixed part: `/data/in/*.json` is read from `/data/in`.
    let fixed = match path.find(['*', '?', '[', '{']) {
        Some(i) => &path[..i],
        None => path,
    };
    let Some(resolved) = resolve(&absolute(Path::new(fixed))) else {
        return false;
    };
    allowed.iter().any(|dir| resolved.starts_with(dir))
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The path with its longest existing ancestor canonicalized; `None` when the part that does
/// not exist yet climbs with `..`.
fn resolve(path: &Path) -> Option<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut out = real;
            for part in rest.iter().rev() {
                if *part == Component::ParentDir.as_os_str() {
                    return None;
                }
                out.push(part);
            }
            return Some(out);
        }
        let last = existing.components().next_back()?;
        rest.push(last.as_os_str().to_os_string());
        if !existing.pop() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_the_allowed_directories_only() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("in")).unwrap();
        let allowed = vec![std::fs::canonicalize(&data).unwrap()];
        let inside = |p: &Path| allowed_path(&allowed, p.to_str().unwrap());
        assert!(inside(&data.join("in/readings.json")));
        assert!(inside(&data.join("out/not-yet/x.csv")));
        assert!(allowed_path(
            &allowed,
            &format!("file://{}/in/*.json", data.display())
        ));
        assert!(!inside(&dir.path().join("elsewhere.csv")));
        assert!(!inside(&data.join("in/../../escape.csv")));
        assert!(!inside(&data.join("not-yet/../../escape.csv")));
        assert!(!inside(Path::new("/etc/passwd")));
        // A link inside the allowed directory that points out of it.
        std::os::unix::fs::symlink("/etc", data.join("etc")).unwrap();
        assert!(!inside(&data.join("etc/passwd")));
    }
}
