//! Every line leakscope prints goes through `src/diag.rs`, which ignores write errors:
//! no `print!`, `println!`, `eprint!` or `eprintln!` in the crate's code outside its
//! tests (a macro that panics when stderr is closed would stop the host program).

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
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
    let mut files = Vec::new();
    rust_files(&src, &mut files);
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
