//! Just enough globbing for `include:`: `*` and `?` in the last path component.

use std::path::{Path, PathBuf};

/// Whether `name` matches `pattern`, where `*` is any run of characters and `?` one character.
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with backtracking to the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Expands `pattern` relative to `base`. Without wildcards, the path itself (if it exists).
/// Files are returned in sorted order; directories and hidden files (unless the pattern
/// names them) are left out.
pub(crate) fn expand(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = base.join(pattern);
    let has_wild = |s: &str| s.contains('*') || s.contains('?');
    if !has_wild(pattern) {
        return if full.is_file() {
            Ok(vec![full])
        } else {
            Err(format!("included file `{pattern}` does not exist"))
        };
    }
    let (dir_part, file_part) = match pattern.rfind('/') {
        Some(i) => (&pattern[..i], &pattern[i + 1..]),
        None => ("", pattern),
    };
    if has_wild(dir_part) {
        return Err(format!(
            "`{pattern}`: only the last path component may hold `*` or `?`"
        ));
    }
    let dir = base.join(dir_part);
    let readable = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir.as_path()
    };
    let entries = std::fs::read_dir(readable).map_err(|e| {
        let shown = if dir_part.is_empty() { "." } else { dir_part };
        format!(
            "cannot read directory `{shown}` for `{pattern}`: {}",
            io_reason(&e)
        )
    })?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_type()
                .map(|t| t.is_file() || t.is_symlink())
                .unwrap_or(false)
        })
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            if name.starts_with('.') && !file_part.starts_with('.') {
                return None;
            }
            matches(file_part, &name).then(|| dir.join(name))
        })
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(format!("`{pattern}` matches no files"));
    }
    Ok(out)
}

/// An I/O error's reason, lower-case and without the OS error number.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher() {
        assert!(matches("*.yaml", "a.yaml"));
        assert!(matches("*.yaml", ".yaml"));
        assert!(!matches("*.yaml", "a.yml"));
        assert!(matches("check-*-*.yaml", "check-a-b.yaml"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("*", "anything"));
        assert!(matches("a*b*c", "aXXbYYbc"));
        assert!(!matches("a*b*c", "aXXbYYb"));
        assert!(matches("exact.yaml", "exact.yaml"));
    }

    #[test]
    fn expands_sorted_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let checks = dir.path().join("checks");
        std::fs::create_dir(&checks).unwrap();
        for name in ["b.yaml", "a.yaml", "c.yml", ".hidden.yaml"] {
            std::fs::write(checks.join(name), "").unwrap();
        }
        std::fs::create_dir(checks.join("d.yaml")).unwrap();
        let got = expand(dir.path(), "checks/*.yaml").unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.yaml", "b.yaml"]);
        assert!(
            expand(dir.path(), "checks/*.toml")
                .unwrap_err()
                .contains("matches no files")
        );
        assert!(
            expand(dir.path(), "nope/*.yaml")
                .unwrap_err()
                .contains("cannot read directory `nope`")
        );
        assert!(
            expand(dir.path(), "*/a.yaml")
                .unwrap_err()
                .contains("last path component")
        );
        assert_eq!(expand(dir.path(), "checks/c.yml").unwrap().len(), 1);
        assert!(
            expand(dir.path(), "checks/x.yml")
                .unwrap_err()
                .contains("does not exist")
        );
    }

    #[test]
    fn an_empty_base_is_the_current_directory() {
        // Tests run in the crate directory; a config given as `invar.yaml` has base "".
        assert_eq!(
            expand(Path::new(""), "Cargo.tom?").unwrap(),
            [PathBuf::from("Cargo.toml")]
        );
    }
}
