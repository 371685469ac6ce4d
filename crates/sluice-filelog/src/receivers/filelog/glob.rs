//! Glob patterns over absolute paths: the `include` and `exclude` lists.
//!
//! Matching is `globset`'s, with `*`, `?` and classes kept within one path
//! component (`literal_separator`): `*` any run of characters within a
//! component, `?` one character, `[abc]`, `[a-z]`, `[!a]` / `[^a]` classes,
//! `{a,b}` alternatives (not nested), `\x` a literal `x`, and `**` as a whole
//! component: any number of directories, including none. Dot-files are not
//! special.
//!
//! What globset does not do is find the files: [`Pattern::expand`] walks
//! from the pattern's literal leading directories (`/var/log` for
//! `/var/log/**/*.log`), no deeper than the pattern can reach without `**`,
//! and keeps the regular files (or links to them) that match. It does not
//! descend into symbolic links to directories (no cycles). This walk is the
//! only hand-written part: `globset` matches, and a general directory walker
//! would not know how deep a pattern can reach.

use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    matcher: GlobMatcher,
    /// The literal leading directories: where the walk starts.
    base: PathBuf,
    /// How many components below `base` a match can be; `None` with `**`.
    depth: Option<usize>,
}

/// True when a pattern component holds glob syntax (is not a literal name).
fn is_wild(component: &str) -> bool {
    component.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, String> {
        if source.trim().is_empty() {
            return Err("empty pattern".to_string());
        }
        let glob = GlobBuilder::new(source)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("pattern {source:?}: {}", e.kind()))?;
        let components: Vec<&str> = source
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let literal = components.iter().take_while(|c| !is_wild(c)).count();
        let mut base = PathBuf::from("/");
        base.extend(&components[..literal]);
        let rest = &components[literal..];
        // Without `**`, a match is at most one level per remaining component
        // (`{a,b/c}` splits in two, which covers its deeper alternative).
        let depth = (!rest.contains(&"**")).then_some(rest.len());
        Ok(Pattern {
            matcher: glob.compile_matcher(),
            base,
            depth,
        })
    }

    /// True when `path` (absolute) matches.
    pub fn matches(&self, path: &Path) -> bool {
        self.matcher.is_match(path)
    }

    /// Adds the existing regular files (or links to them) that match to
    /// `out`. Unreadable directories are skipped.
    pub fn expand(&self, out: &mut Vec<PathBuf>) {
        if self.depth == Some(0) {
            // A literal path: the file itself, if it is one.
            if self.base.is_file() {
                out.push(self.base.clone());
            }
            return;
        }
        self.walk(&self.base, 0, out);
    }

    fn walk(&self, dir: &Path, level: usize, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue };
            let path = e.path();
            if kind.is_dir() {
                if self.depth.is_none_or(|d| level + 1 < d) {
                    self.walk(&path, level + 1, out);
                }
            } else if path.is_file() && self.matcher.is_match(&path) {
                // `is_file` follows a link: a link to a file counts, a link
                // to a directory is neither walked nor kept.
                out.push(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> bool {
        Pattern::new(p).unwrap().matches(Path::new(path))
    }

    #[test]
    fn matching() {
        assert!(m("/var/log/*.log", "/var/log/app.log"));
        assert!(!m("/var/log/*.log", "/var/log/app.log.1"));
        assert!(!m("/var/log/*.log", "/var/log/sub/app.log"));
        assert!(m("/var/log/**/*.log", "/var/log/app.log"));
        assert!(m("/var/log/**/*.log", "/var/log/a/b/app.log"));
        assert!(m("/var/log/app.log*", "/var/log/app.log.1"));
        assert!(m("/var/log/app-?.log", "/var/log/app-1.log"));
        assert!(!m("/var/log/app-?.log", "/var/log/app-12.log"));
        assert!(m("/var/log/app-[0-9].log", "/var/log/app-7.log"));
        assert!(!m("/var/log/app-[!0-9].log", "/var/log/app-7.log"));
        assert!(m("/var/log/{a,b/c}.log", "/var/log/b/c.log"));
        assert!(m("/var/log/{a,b}-{1,2}.log", "/var/log/b-2.log"));
        assert!(m("/var/log/*a*b*", "/var/log/xxaxxbxx"));
        assert!(!m("/var/log/*a*b", "/var/log/xxaxxbxx"));
        assert!(m("/var/log/\\*.log", "/var/log/*.log"));
        assert!(!m("/var/log/\\*.log", "/var/log/x.log"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for p in ["/a/[b", "/a/{b", "/a/b}", "/a/\\", "", "/a/[z-a]"] {
            assert!(Pattern::new(p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn expansion_finds_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        for f in ["x.log", "y.txt", "a/z.log", "a/b/w.log"] {
            std::fs::write(root.join(f), b"1").unwrap();
        }
        let mut out = Vec::new();
        Pattern::new(&format!("{}/**/*.log", root.display()))
            .unwrap()
            .expand(&mut out);
        out.sort();
        let want: Vec<PathBuf> = ["a/b/w.log", "a/z.log", "x.log"]
            .iter()
            .map(|f| root.join(f))
            .collect();
        assert_eq!(out, want);
    }

    #[test]
    fn expansion_stops_where_the_pattern_cannot_reach() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        for f in ["x.log", "a/z.log", "a/b/w.log"] {
            std::fs::write(root.join(f), b"1").unwrap();
        }
        let expand = |p: &str| {
            let mut out = Vec::new();
            Pattern::new(&format!("{}/{p}", root.display()))
                .unwrap()
                .expand(&mut out);
            out.sort();
            out
        };
        assert_eq!(expand("*.log"), vec![root.join("x.log")]);
        assert_eq!(expand("*/*.log"), vec![root.join("a/z.log")]);
        assert_eq!(expand("a/z.log"), vec![root.join("a/z.log")]);
        assert_eq!(
            expand("a/{z,b/w}.log"),
            vec![root.join("a/b/w.log"), root.join("a/z.log")]
        );
    }

    #[test]
    fn links_to_directories_are_not_walked() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::write(root.join("real/a.log"), b"1").unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("loop")).unwrap();
        std::os::unix::fs::symlink(root.join("real/a.log"), root.join("link.log")).unwrap();
        let mut out = Vec::new();
        Pattern::new(&format!("{}/**/*.log", root.display()))
            .unwrap()
            .expand(&mut out);
        out.sort();
        assert_eq!(out, vec![root.join("link.log"), root.join("real/a.log")]);
    }
}
