//! The tables of environment variables in README.md and in the crate docs (src/lib.rs)
//! list exactly the variables the parser reads (`leakscope::env::ENV_VARS`), with the same
//! defaults.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// `var -> default` from the rows of a markdown table whose first cell is a
/// backticked `LEAKSCOPE*` name; `prefix` is what precedes the row on its line.
fn table_rows(text: &str, prefix: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix(prefix))
        .map(str::trim_start)
        .filter(|l| l.starts_with("| `LEAKSCOPE"))
        .map(|row| {
            let cells: Vec<&str> = row
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            assert!(
                cells.len() >= 3,
                "a row needs name, default and meaning: {row}"
            );
            let clean = |c: &str| c.replace('`', "").trim().to_string();
            (clean(cells[0]), clean(cells[1]))
        })
        .collect()
}

fn expected() -> BTreeMap<String, String> {
    leakscope::env::ENV_VARS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn check(file: &str, rows: Vec<(String, String)>) {
    assert!(
        !rows.is_empty(),
        "{file} has no table of LEAKSCOPE_* variables"
    );
    let mut table = BTreeMap::new();
    for (var, default) in rows {
        assert!(
            table.insert(var.clone(), default).is_none(),
            "{file} lists {var} twice"
        );
    }
    assert_eq!(
        table,
        expected(),
        "{file}'s table (left) differs from leakscope::env::ENV_VARS (right)"
    );
}

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn readme_table_matches_the_parser() {
    check("README.md", table_rows(&read("README.md"), ""));
}

#[test]
fn crate_docs_table_matches_the_parser() {
    check("src/lib.rs", table_rows(&read("src/lib.rs"), "//!"));
}

#[test]
fn the_parser_list_is_consistent() {
    let names: Vec<&str> = leakscope::env::ENV_VARS.iter().map(|(k, _)| *k).collect();
    for var in [
        leakscope::env::ENV_ENABLE,
        leakscope::env::ENV_DIR,
        leakscope::env::ENV_SAMPLE_BYTES,
        leakscope::env::ENV_CPU_HZ,
        leakscope::env::ENV_CPU_SECONDS,
        leakscope::env::ENV_CPU_LIMIT,
        leakscope::env::ENV_CPU_ON,
    ] {
        assert!(names.contains(&var), "{var} missing from ENV_VARS");
    }
    let dir_default = leakscope::env::ENV_VARS
        .iter()
        .find(|(k, _)| *k == leakscope::env::ENV_DIR)
        .map(|(_, v)| *v);
    assert_eq!(dir_default, Some(leakscope::env::DEFAULT_DIR));
}

#[test]
fn the_row_parser_reads_both_styles() {
    let md = "| var | default | meaning |\n|---|---|---|\n| `LEAKSCOPE_X` | `1KiB` | a \\| b |\n| `OTHER` | x | y |\n";
    assert_eq!(
        table_rows(md, ""),
        vec![("LEAKSCOPE_X".into(), "1KiB".into())]
    );
    let rs = "//! | `LEAKSCOPE` | off | switch |\n// | `LEAKSCOPE_NOT` | x | y |\n";
    assert_eq!(
        table_rows(rs, "//!"),
        vec![("LEAKSCOPE".into(), "off".into())]
    );
}
