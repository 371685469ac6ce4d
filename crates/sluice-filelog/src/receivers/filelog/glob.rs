//! Glob patterns over absolute paths, matched one path component at a time.
//!
//! `*` any run of characters within a component, `?` one character,
//! `[abc]`, `[a-z]`, `[!a]` / `[^a]` character classes, `{a,b}` alternatives
//! (expanded up front, may nest), `\x` a literal `x`, and `**` as a whole
//! component: any number of directories, including none. Dot-files are not
//! special. `**` does not descend into symbolic links to directories (no
//! cycles); a symbolic link to a file is matched like a file.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Char(char),
    Any,
    One,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Component {
    Literal(String),
    Wild(Vec<Tok>),
    DoubleStar,
}

/// A compiled pattern: one or more alternatives (from `{a,b}`), each a list
/// of components.
#[derive(Debug, Clone)]
pub struct Pattern {
    alternatives: Vec<Vec<Component>>,
}

/// Most alternatives one pattern may expand to.
const MAX_ALTERNATIVES: usize = 256;

fn expand_braces(s: &str, out: &mut Vec<String>) -> Result<(), String> {
    if out.len() > MAX_ALTERNATIVES {
        return Err(format!("more than {MAX_ALTERNATIVES} {{...}} alternatives"));
    }
    // Find the first top-level '{' (not escaped) and its matching '}'.
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut open = None;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '{' => {
                open = Some(i);
                break;
            }
            '}' => return Err("unmatched '}'".to_string()),
            _ => {}
        }
        i += 1;
    }
    let Some(open) = open else {
        out.push(s.to_string());
        return Ok(());
    };
    let mut depth = 0;
    let mut parts = Vec::new();
    let mut start = open + 1;
    let mut close = None;
    let mut j = open;
    while j < chars.len() {
        match chars[j] {
            '\\' => j += 1,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    parts.push(chars[start..j].iter().collect::<String>());
                    close = Some(j);
                    break;
                }
            }
            ',' if depth == 1 => {
                parts.push(chars[start..j].iter().collect::<String>());
                start = j + 1;
            }
            _ => {}
        }
        j += 1;
    }
    let Some(close) = close else {
        return Err("unmatched '{'".to_string());
    };
    let head: String = chars[..open].iter().collect();
    let tail: String = chars[close + 1..].iter().collect();
    for p in parts {
        expand_braces(&format!("{head}{p}{tail}"), out)?;
    }
    Ok(())
}

fn compile_component(c: &str) -> Result<Component, String> {
    if c == "**" {
        return Ok(Component::DoubleStar);
    }
    let mut toks = Vec::new();
    let mut wild = false;
    let mut it = c.chars().peekable();
    while let Some(ch) = it.next() {
        match ch {
            '\\' => match it.next() {
                Some(e) => toks.push(Tok::Char(e)),
                None => return Err("pattern ends with '\\'".to_string()),
            },
            '*' => {
                wild = true;
                if toks.last() != Some(&Tok::Any) {
                    toks.push(Tok::Any);
                }
            }
            '?' => {
                wild = true;
                toks.push(Tok::One);
            }
            '[' => {
                wild = true;
                let negated = matches!(it.peek(), Some('!') | Some('^'));
                if negated {
                    it.next();
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let Some(mut lo) = it.next() else {
                        return Err("unclosed '['".to_string());
                    };
                    if lo == ']' && !first {
                        break;
                    }
                    first = false;
                    if lo == '\\' {
                        lo = it.next().ok_or("unclosed '['")?;
                    }
                    let mut hi = lo;
                    if it.peek() == Some(&'-') {
                        it.next();
                        match it.next() {
                            Some(']') => {
                                ranges.push((lo, lo));
                                ranges.push(('-', '-'));
                                break;
                            }
                            Some('\\') => hi = it.next().ok_or("unclosed '['")?,
                            Some(h) => hi = h,
                            None => return Err("unclosed '['".to_string()),
                        }
                        if hi < lo {
                            return Err(format!("bad range {lo}-{hi}"));
                        }
                    }
                    ranges.push((lo, hi));
                }
                toks.push(Tok::Class { negated, ranges });
            }
            ']' => return Err("unmatched ']'".to_string()),
            c => toks.push(Tok::Char(c)),
        }
    }
    if wild {
        Ok(Component::Wild(toks))
    } else {
        Ok(Component::Literal(
            toks.into_iter()
                .map(|t| match t {
                    Tok::Char(c) => c,
                    _ => unreachable!("no wildcard tokens in a literal"),
                })
                .collect(),
        ))
    }
}

fn match_toks(toks: &[Tok], name: &[char]) -> bool {
    // Iterative matcher with single-star backtracking.
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if t < toks.len() {
            match &toks[t] {
                Tok::Any => {
                    star = Some((t, n));
                    t += 1;
                    continue;
                }
                Tok::One => {
                    t += 1;
                    n += 1;
                    continue;
                }
                Tok::Char(c) if *c == name[n] => {
                    t += 1;
                    n += 1;
                    continue;
                }
                Tok::Class { negated, ranges } => {
                    let c = name[n];
                    let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                    if inside != *negated {
                        t += 1;
                        n += 1;
                        continue;
                    }
                }
                Tok::Char(_) => {}
            }
        }
        match star {
            Some((st, sn)) => {
                t = st + 1;
                n = sn + 1;
                star = Some((st, sn + 1));
            }
            None => return false,
        }
    }
    toks[t..].iter().all(|t| *t == Tok::Any)
}

fn component_matches(c: &Component, name: &str) -> bool {
    match c {
        Component::Literal(l) => l == name,
        Component::Wild(toks) => {
            let chars: Vec<char> = name.chars().collect();
            match_toks(toks, &chars)
        }
        Component::DoubleStar => true,
    }
}

fn match_components(comps: &[Component], names: &[&str]) -> bool {
    match comps.first() {
        None => names.is_empty(),
        Some(Component::DoubleStar) => {
            (0..=names.len()).any(|skip| match_components(&comps[1..], &names[skip..]))
        }
        Some(c) => match names.first() {
            Some(n) if component_matches(c, n) => match_components(&comps[1..], &names[1..]),
            _ => false,
        },
    }
}

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, String> {
        if source.trim().is_empty() {
            return Err("empty pattern".to_string());
        }
        let mut expanded = Vec::new();
        expand_braces(source, &mut expanded).map_err(|e| format!("pattern {source:?}: {e}"))?;
        let mut alternatives = Vec::new();
        for alt in expanded {
            let comps = alt
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .map(compile_component)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("pattern {source:?}: {e}"))?;
            alternatives.push(comps);
        }
        Ok(Pattern { alternatives })
    }

    /// True when `path` (absolute) matches.
    pub fn matches(&self, path: &Path) -> bool {
        let s = path.to_string_lossy();
        let names: Vec<&str> = s.split('/').filter(|c| !c.is_empty()).collect();
        self.alternatives
            .iter()
            .any(|comps| match_components(comps, &names))
    }

    /// Adds the existing regular files (or links to them) that match to
    /// `out`. Unreadable directories are skipped.
    pub fn expand(&self, out: &mut Vec<PathBuf>) {
        for comps in &self.alternatives {
            walk(PathBuf::from("/"), comps, out);
        }
    }
}

fn walk(dir: PathBuf, comps: &[Component], out: &mut Vec<PathBuf>) {
    let Some(first) = comps.first() else {
        if dir.is_file() {
            out.push(dir);
        }
        return;
    };
    match first {
        Component::Literal(name) => walk(dir.join(name), &comps[1..], out),
        Component::DoubleStar => {
            // Zero directories...
            walk(dir.clone(), &comps[1..], out);
            // ...or one more, then `**` again.
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(e.path(), comps, out);
                }
            }
        }
        Component::Wild(_) => {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                if component_matches(first, &name.to_string_lossy()) {
                    walk(e.path(), &comps[1..], out);
                }
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
        for p in ["/a/[b", "/a/{b", "/a/b}", "/a/]", "/a/\\", "", "/a/[z-a]"] {
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
}
