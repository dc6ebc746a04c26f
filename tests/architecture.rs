//! Checks of the source tree's shape (see ARCHITECTURE.md).
//!
//! * The hot side, `src/alloc/`, runs inside the program's `alloc`/`dealloc`/`realloc`
//!   and must import nothing from the rest of the crate: no `crate::` path outside
//!   `crate::alloc`, no `super::super`. Its modules depend on each other without cycles.
//! * Every line leakscope prints goes through `src/diag.rs`, which ignores write errors:
//!   no `print!`, `println!`, `eprint!` or `eprintln!` in the crate's code outside its
//!   tests (a macro that panics when stderr is closed would stop the host program).
//! * ARCHITECTURE.md's code map lists every source file under `src/` exactly once, and
//!   only files that exist.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The `.rs` files under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("directory entry").path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn hot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/alloc")
}

/// `src` with comments and the contents of string and char literals blanked out (so
/// that only code is checked; a doc comment may mention any path).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // A one-character literal (lifetimes have no closing quote).
            i += 3;
            out.push_str("' '");
        } else {
            let c = src[i..].chars().next().expect("a character");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The path segments that follow each `prefix::` in `code` (`prefix` standing alone:
/// not the end of a longer identifier, not `$crate`), with a `{...}` group expanded to
/// the first segment of each of its items.
fn segments_after(code: &str, prefix: &str) -> Vec<String> {
    let pat = format!("{prefix}::");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(k) = code[from..].find(&pat) {
        let at = from + k;
        from = at + pat.len();
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == '$' || c == ':') {
            continue;
        }
        let rest = code[from..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => items.push(std::mem::take(&mut item)),
                    _ => {}
                }
                if depth >= 1 && c != ',' {
                    item.push(c);
                }
            }
            items.push(item);
            for it in items {
                let seg: String = it.trim().chars().take_while(|&c| is_ident(c)).collect();
                if !seg.is_empty() {
                    out.push(seg);
                }
            }
        } else {
            let seg: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            if !seg.is_empty() {
                out.push(seg);
            }
        }
    }
    out
}

/// `code` without the bodies of inline modules (`mod tests { ... }`), in which `super`
/// is the file's own module rather than its parent.
fn without_inline_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(k) = rest.find("mod ") {
        let (head, tail) = rest.split_at(k);
        out.push_str(head);
        let after = &tail[4..];
        let name_len = after.chars().take_while(|&c| is_ident(c)).count();
        let opens = after[name_len..].trim_start().starts_with('{');
        let standalone = !head.chars().next_back().is_some_and(is_ident);
        if !(opens && standalone && name_len > 0) {
            out.push_str("mod ");
            rest = after;
            continue;
        }
        let body = &after[name_len..];
        let open = body.find('{').expect("an opening brace");
        let mut depth = 0;
        let mut end = body.len();
        for (i, c) in body[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &body[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_hot_side_imports_nothing_from_the_rest_of_the_crate() {
    let files = rust_files(&hot_dir());
    assert!(files.len() > 5, "found the hot side's files: {files:?}");
    let mut bad = Vec::new();
    for f in &files {
        let code = code_only(&fs::read_to_string(f).expect("read a source file"));
        for seg in segments_after(&code, "crate") {
            if seg != "alloc" {
                bad.push(format!("{}: crate::{seg}", f.display()));
            }
        }
        if code.contains("super::super") {
            bad.push(format!("{}: super::super", f.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "src/alloc/ must import nothing from the rest of the crate:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_look_for() {
    let code = code_only(
        "use crate::alloc::x; // crate::layer\nuse crate::{layer, alloc::y};\n\
         let s = \"crate::write\"; $crate::z; super::super::a; /* crate::c */",
    );
    assert_eq!(segments_after(&code, "crate"), ["alloc", "layer", "alloc"]);
    assert!(code.contains("super::super"));
    assert_eq!(
        segments_after("use super::{a, b::{c, d}, e};", "super"),
        ["a", "b", "e"]
    );
    let outer = without_inline_modules("use super::a;\nmod tests { use super::*; fn f() {} }\nb");
    assert_eq!(segments_after(&outer, "super"), ["a"]);
    assert!(outer.ends_with('b'));
}

#[test]
fn the_hot_side_modules_form_no_cycle() {
    let files = rust_files(&hot_dir());
    let name = |f: &Path| f.file_stem().and_then(|s| s.to_str()).unwrap().to_string();
    let modules: BTreeSet<String> = files.iter().map(|f| name(f)).collect();
    // Edges: a file's `super::m` is a use of sibling `m`, and `super::item` of an item of
    // `mod.rs`; `mod.rs`'s own `m::` is a use of its child `m`.
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let me = name(f);
        let code = code_only(&fs::read_to_string(f).expect("read a source file"));
        let code = without_inline_modules(&code);
        let deps = uses.entry(me.clone()).or_default();
        if me == "mod" {
            for m in &modules {
                if m != "mod" && !segments_after(&code, m).is_empty() {
                    deps.insert(m.clone());
                }
            }
        } else {
            for seg in segments_after(&code, "super") {
                deps.insert(if modules.contains(&seg) {
                    seg
                } else {
                    "mod".to_string()
                });
            }
        }
        deps.remove(&me);
    }
    // Depth-first search for a cycle.
    fn visit(
        m: &str,
        uses: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in uses.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, uses, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in uses.keys() {
        if let Some(cycle) = visit(m, &uses, &mut Vec::new(), &mut done) {
            panic!("an import cycle inside src/alloc/: {}", cycle.join(" -> "));
        }
    }
}

/// The part of `text` that is not its test module (`#[cfg(test)] mod tests` and what
/// follows it; test modules are last in this crate's files).
fn code_outside_tests(text: &str) -> &str {
    const MARK: &str = "#[cfg(test)]";
    let mut from = 0;
    while let Some(i) = text[from..].find(MARK) {
        let at = from + i;
        if text[at + MARK.len()..]
            .trim_start()
            .starts_with("mod tests")
        {
            return &text[..at];
        }
        from = at + MARK.len();
    }
    text
}

/// The lines of `code` that use a printing macro (whole words, comments left out).
fn printing_macros(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let line = line.split("//").next().unwrap_or("");
        for mac in ["print!", "println!", "eprint!", "eprintln!"] {
            for (i, _) in line.match_indices(mac) {
                let before = line[..i].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                found.push(format!("line {}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn no_printing_macros_outside_tests() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&src);
    assert!(files.len() > 20, "the crate's sources: {files:?}");
    let mut offenders = Vec::new();
    for f in &files {
        // A module's tests kept in its own file.
        if f.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for hit in printing_macros(code_outside_tests(&text)) {
            offenders.push(format!("{}: {hit}", f.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "print through crate::diag::say instead:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_scan_finds_what_it_looks_for() {
    let code = "fn a() {\n    eprintln!(\"x\");\n    diag::say(format_args!(\"y\"));\n    // println!(\"in a comment\")\n    my_eprintln!(\"z\");\n}\n#[cfg(test)]\nmod tests {\n    fn t() { println!(\"ok in tests\"); }\n}\n";
    let hits = printing_macros(code_outside_tests(code));
    assert_eq!(hits, vec!["line 2: eprintln!(\"x\");".to_string()]);
    assert_eq!(code_outside_tests("fn a() {}\n"), "fn a() {}\n");
}

/// The code map in ARCHITECTURE.md lists every source file under `src/` exactly once, and
/// every file it names exists.
#[test]
fn architecture_code_map_matches_the_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut listed = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix("| `") else {
            continue;
        };
        let Some(end) = rest.find('`') else { continue };
        let path = &rest[..end];
        if path.contains('*') {
            continue; // a pattern row (e.g. `tests/*.rs`), not a file
        }
        listed.push(path.to_string());
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in &listed {
        assert!(seen.insert(p.clone()), "ARCHITECTURE.md lists {p} twice");
        assert!(
            root.join(p).exists(),
            "ARCHITECTURE.md lists {p}, which does not exist"
        );
    }
    for f in rust_files(&root.join("src")) {
        let rel = f
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        assert!(
            seen.contains(&rel),
            "{rel} is missing from ARCHITECTURE.md's code map"
        );
    }
}

/// `unsafe` is denied crate-wide; only the hot side (allowed on its `mod` line in
/// `lib.rs`) and `src/sys.rs` (which covers its submodules in `src/sys/`) may lift that,
/// and the tracing layer's `downcast_raw` (a forwarding method the trait declares
/// `unsafe`).
#[test]
fn unsafe_code_is_allowed_only_for_the_hot_side_and_sys() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut elsewhere = Vec::new();
    for f in rust_files(&root.join("src")) {
        let rel = f
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel.starts_with("src/alloc/") || rel == "src/sys.rs" || rel.starts_with("src/sys/") {
            continue;
        }
        let mut code = code_only(&fs::read_to_string(&f).expect("read a source file"));
        if rel == "src/layer/mod.rs" {
            // The one named exception: the trait's `unsafe fn downcast_raw`, forwarded.
            code = code
                .replacen("unsafe fn downcast_raw", "fn downcast_raw", 1)
                .replacen("unsafe { self.inner.downcast_raw(id) }", "", 1);
        }
        let uses_unsafe = code.match_indices("unsafe").any(|(i, _)| {
            let before = code[..i].chars().next_back();
            let after = code[i + 6..].chars().next();
            !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
        });
        if uses_unsafe {
            elsewhere.push(rel);
        }
    }
    assert!(
        elsewhere.is_empty(),
        "unsafe code outside src/alloc/ and src/sys(.rs|/): {elsewhere:?}"
    );
    let lib = fs::read_to_string(root.join("src/lib.rs")).expect("src/lib.rs");
    assert!(
        lib.contains("#![deny(unsafe_code)]"),
        "lib.rs must deny unsafe_code"
    );
    let mut allowed = Vec::new();
    for f in rust_files(&root.join("src")) {
        let text = fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.contains("allow(unsafe_code)") || line.trim_start().starts_with("//") {
                continue;
            }
            let rel = f
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let next = lines.get(i + 1).map_or("", |l| l.trim());
            allowed.push(format!("{rel}: {} / {next}", line.trim()));
        }
    }
    assert_eq!(
        allowed,
        vec![
            "src/layer/mod.rs: #[allow(unsafe_code)] / unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {".to_string(),
            "src/lib.rs: #[allow(unsafe_code)] / mod alloc;".to_string(),
            "src/sys.rs: #![allow(unsafe_code)] / ".to_string(),
        ],
        "unexpected allow(unsafe_code)"
    );
}
