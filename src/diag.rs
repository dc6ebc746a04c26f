//! Every line leakscope prints goes through [`say`]: one write to stderr, every error
//! ignored (stderr closed, full, or a broken pipe), so printing never panics and never
//! changes how the host program ends.

use std::fmt;
use std::io::{self, Write};

use crate::alloc::thread::ProfilerGuard;

/// Writes `leakscope: <args>` and a newline to stderr in one write, ignoring errors.
pub(crate) fn say(args: fmt::Arguments<'_>) {
    let _own = ProfilerGuard::new();
    let line = format!("leakscope: {args}\n");
    let _ = io::stderr().lock().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_written_without_panicking() {
        say(format_args!("diag test line {}", 1));
    }
}
