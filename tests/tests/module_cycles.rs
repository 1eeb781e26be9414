//! No import cycles between the modules (files) of any crate: a module
//! names another through `crate::a::b` or `super::b`, and the modules that
//! can reach each other that way must be none. Parent and child `mod`
//! declarations are not uses, and `#[cfg(test)] mod tests` blocks at the end
//! of a file are left out (tests may reach anywhere).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// The module path of a source file below `src`.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut m: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(m.last().map(String::as_str), Some("lib" | "main" | "mod")) {
        m.pop();
    }
    m
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and its trailing test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths like `crate::a::b` and `super::super::c` in `code`, resolved
/// against `me`, including the names inside `use crate::{a, b::c}`.
fn references(me: &Module, code: &str) -> Vec<Module> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut rest = code;
    // Both markers are 7 bytes long.
    while let Some(at) = [rest.find("crate::"), rest.find("super::")]
        .into_iter()
        .flatten()
        .min()
    {
        let before_ok = at == 0 || !rest[..at].ends_with(ident);
        let tail = &rest[at..];
        rest = &tail[7..];
        if !before_ok {
            continue;
        }
        let path: String = tail
            .chars()
            .take_while(|&c| ident(c) || c == ':' || c == '{' || c == ',' || c == ' ' || c == '\n')
            .collect();
        let mut base: Module = Vec::new();
        let mut parts = path.split("::").map(str::trim).peekable();
        match parts.next() {
            Some("crate") => {}
            Some("super") => {
                base = me.clone();
                base.pop();
                while parts.peek() == Some(&"super") {
                    parts.next();
                    base.pop();
                }
            }
            _ => continue,
        }
        let segs: Vec<&str> = parts.collect();
        // `use crate::{a, b::c}`: each name is a reference.
        if let Some(first) = segs.first()
            && first.starts_with('{')
        {
            let inner = path.split_once('{').map_or("", |(_, r)| r);
            let inner = inner.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                let name = item.trim().split("::").next().unwrap_or("").trim();
                if !name.is_empty() && name.chars().all(ident) {
                    let mut m = base.clone();
                    m.push(name.to_string());
                    out.push(m);
                }
            }
            continue;
        }
        let mut m = base;
        for s in segs {
            let s = s.split(|c: char| !ident(c)).next().unwrap_or("");
            if s.is_empty() {
                break;
            }
            m.push(s.to_string());
        }
        out.push(m);
    }
    out
}

/// The cycles (strongly connected components of more than one module).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    // Kosaraju: order by finish time, then walk the reversed graph.
    fn visit(
        v: &Module,
        g: &BTreeMap<Module, BTreeSet<Module>>,
        seen: &mut BTreeSet<Module>,
        out: &mut Vec<Module>,
    ) {
        if !seen.insert(v.clone()) {
            return;
        }
        for w in g.get(v).into_iter().flatten() {
            visit(w, g, seen, out);
        }
        out.push(v.clone());
    }
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for v in edges.keys() {
        visit(v, edges, &mut seen, &mut order);
    }
    let mut rev: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (v, ws) in edges {
        for w in ws {
            rev.entry(w.clone()).or_default().insert(v.clone());
        }
    }
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for v in order.iter().rev() {
        let mut comp = Vec::new();
        visit(v, &rev, &mut seen, &mut comp);
        if comp.len() > 1 {
            found.push(comp);
        }
    }
    found
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut problems = Vec::new();
    for krate in [
        "shared",
        "buildlet",
        "coordinator",
        "gomoted",
        "gomote",
        "tests",
    ] {
        let src = root.join(krate).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeMap<Module, PathBuf> = files
            .iter()
            .map(|f| (module_of(&src, f), f.clone()))
            .collect();
        let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
        for (m, f) in &modules {
            let text = std::fs::read_to_string(f).unwrap();
            let targets = edges.entry(m.clone()).or_default();
            for r in references(m, &code(&text)) {
                // The longest prefix that is a file is the module named.
                let hit = (1..=r.len())
                    .rev()
                    .map(|k| r[..k].to_vec())
                    .find(|p| modules.contains_key(p));
                if let Some(t) = hit
                    && &t != m
                {
                    targets.insert(t);
                }
            }
        }
        for c in cycles(&edges) {
            let names: Vec<String> = c.iter().map(|m| modules[m].display().to_string()).collect();
            problems.push(format!("{krate}: {}", names.join(" <-> ")));
        }
    }
    assert!(
        problems.is_empty(),
        "module cycles:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_sees_a_cycle() {
    let a: Module = vec!["a".into()];
    let b: Module = vec!["b".into()];
    let refs = references(&a, "use crate::{b, c::d};\nfn f() { super::x(); }");
    assert!(refs.contains(&b));
    let mut edges = BTreeMap::new();
    edges.insert(a.clone(), BTreeSet::from([b.clone()]));
    edges.insert(b.clone(), BTreeSet::from([a.clone()]));
    assert_eq!(cycles(&edges).len(), 1);
    edges.insert(b, BTreeSet::new());
    assert!(cycles(&edges).is_empty());
}
