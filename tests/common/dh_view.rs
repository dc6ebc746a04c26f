//! Valgrind's DHAT viewer on a DHAT file: `dh_view.js` (installed with valgrind) run by
//! Node.js through `dh_view_node.js` beside this file, which stubs the little of the DOM
//! the viewer uses and prints what the page shows for every sort metric.

use std::path::Path;
use std::process::Command;

/// Where valgrind installs the viewer's script.
pub(crate) const VIEWER: &str = "/usr/libexec/valgrind/dh_view.js";

/// The text valgrind's viewer shows for `file`, one block per sort metric. Panics with
/// the viewer's message if it rejects the file, and names the package to install if
/// Node.js or the viewer is missing.
pub(crate) fn dh_view_text(file: &Path) -> String {
    assert!(
        Path::new(VIEWER).exists(),
        "{VIEWER} is needed (Debian: apt-get install valgrind)"
    );
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/dh_view_node.js");
    let out = Command::new("node")
        .arg(&harness)
        .arg(VIEWER)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("`node` is needed (Debian: apt-get install nodejs): {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dh_view rejects {}: {}\n{text}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}
