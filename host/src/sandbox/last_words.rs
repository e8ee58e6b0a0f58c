//! A trapped guest's last words: what it wrote to stderr just before the trap, boiled down to the
//! lines that say what went wrong, for the trap's error message.
//!
//! Each language's runtime reports a failure its own way. A Rust guest prints its panic message;
//! componentize-py prints the Python traceback, then panics in its own Rust glue; componentize-js
//! prints the JavaScript exception and its stack. Around those sit lines that say nothing about
//! the plugin (Rust's advice to set `RUST_BACKTRACE`, which means nothing in a sandbox;
//! SpiderMonkey's note that it aborts): those are left out.

use super::output::{LogLevel, LogLine, truncate};

/// The most bytes of a guest's last words kept in an error message.
pub const MAX_LAST_WORDS_BYTES: usize = 512;
/// The most stderr lines kept when no traceback stands out.
const MAX_TAIL_LINES: usize = 2;
/// How Python starts a traceback.
const PYTHON_TRACEBACK: &str = "Traceback (most recent call last):";
/// How StarlingMonkey (componentize-js) starts the stack under an uncaught exception's message.
const JS_STACK: &str = "Stack:";

/// What the guest said before it trapped, or `None` when it said nothing.
///
/// A Python traceback becomes its exception and the frame it was raised in
/// (`KeyError: '9' (at File "/app.py", line 21, in decide)`), a JavaScript exception its message
/// and the frame it was thrown in; otherwise the last stderr lines, joined by ` / `. A guest that
/// wrote nothing to stderr is heard through a Rust panic's message logged as its last line (at
/// `error`, starting `panicked at `), its lines joined the same way: a plugin built for
/// `wasm32-unknown-unknown` has no stderr, and the Rust SDK's panic hook logs the message so. Any
/// other line, an error the plugin logged before it trapped for another reason say, is not taken
/// for its last words. Capped at [`MAX_LAST_WORDS_BYTES`].
pub fn last_words(log: &[LogLine]) -> Option<String> {
    let said = stderr_words(log).or_else(|| logged_panic(log))?;
    Some(truncate(&said, MAX_LAST_WORDS_BYTES).to_owned())
}

/// How Rust's panic message starts (`PanicHookInfo`'s `Display`).
const RUST_PANIC: &str = "panicked at ";

/// The Rust SDK's panic line, when it is the last line of the log (see [`last_words`]).
fn logged_panic(log: &[LogLine]) -> Option<String> {
    let line = log
        .last()
        .filter(|line| line.level == LogLevel::Error && line.message.starts_with(RUST_PANIC))?;
    Some(joined(
        line.message.lines().filter(|l| !l.trim().is_empty()),
    ))
}

/// What the guest wrote to stderr, boiled down (see [`last_words`]).
fn stderr_words(log: &[LogLine]) -> Option<String> {
    let lines: Vec<&str> = log
        .iter()
        .filter(|line| line.level == LogLevel::Stderr)
        .map(|line| line.message.trim_end())
        .filter(|line| !is_runtime_noise(line))
        .collect();
    python_exception(&lines)
        .or_else(|| javascript_exception(&lines))
        .or_else(|| {
            let said: Vec<&str> = lines.iter().filter(|l| !l.is_empty()).copied().collect();
            let tail = &said[said.len().saturating_sub(MAX_TAIL_LINES)..];
            (!tail.is_empty()).then(|| joined(tail.iter().copied()))
        })
}

/// The exception of the last Python traceback, and where it was raised.
///
/// After `Traceback (most recent call last):` come the frames, indented; the exception is the
/// first line that is not, with the lines after it up to a blank one (a message of several
/// lines). The frame is the last `File ...` line before it.
fn python_exception(lines: &[&str]) -> Option<String> {
    let start = lines.iter().rposition(|line| *line == PYTHON_TRACEBACK)? + 1;
    let traceback = &lines[start..];
    let at = traceback.iter().position(|line| !line.starts_with(' '))?;
    let exception = joined(
        traceback[at..]
            .iter()
            .take_while(|line| !line.is_empty() && !line.starts_with(' '))
            .copied(),
    );
    let frame = traceback[..at]
        .iter()
        .rev()
        .map(|line| line.trim())
        .find(|line| line.starts_with("File "));
    with_frame(exception, frame)
}

/// The last JavaScript exception StarlingMonkey printed, and where it was thrown: its message is
/// the lines before `Stack:` (back to a blank line), the frame the first line after.
fn javascript_exception(lines: &[&str]) -> Option<String> {
    let stack = lines.iter().rposition(|line| *line == JS_STACK)?;
    let from = lines[..stack]
        .iter()
        .rposition(|line| line.is_empty())
        .map_or(0, |blank| blank + 1);
    let message = joined(lines[from..stack].iter().copied());
    let frame = lines[stack + 1..]
        .iter()
        .map(|line| line.trim())
        .find(|line| !line.is_empty());
    with_frame(message, frame)
}

fn with_frame(said: String, frame: Option<&str>) -> Option<String> {
    match (said.is_empty(), frame) {
        (true, _) => None,
        (false, Some(frame)) => Some(format!("{said} (at {frame})")),
        (false, None) => Some(said),
    }
}

fn joined<'a>(lines: impl Iterator<Item = &'a str>) -> String {
    lines.map(str::trim).collect::<Vec<_>>().join(" / ")
}

/// A line that says nothing about the plugin's failure: Rust's advice to set `RUST_BACKTRACE`
/// (meaningless in a sandbox), and SpiderMonkey's note that it aborts.
fn is_runtime_noise(line: &str) -> bool {
    (line.starts_with("note: ") && line.contains("RUST_BACKTRACE"))
        || line == "Redirecting call to abort() to mozalloc_abort"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stderr(lines: &[&str]) -> Vec<LogLine> {
        lines
            .iter()
            .map(|message| LogLine {
                level: LogLevel::Stderr,
                message: (*message).to_owned(),
            })
            .collect()
    }

    #[test]
    fn a_rust_panic_is_its_message_without_the_backtrace_advice() {
        let log = stderr(&[
            "thread '<unnamed>' panicked at src/lib.rs:12:5:",
            "trapping on purpose",
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        ]);
        assert_eq!(
            last_words(&log).as_deref(),
            Some("thread '<unnamed>' panicked at src/lib.rs:12:5: / trapping on purpose")
        );
    }

    #[test]
    fn a_python_traceback_is_its_exception_and_where_it_was_raised() {
        let log = stderr(&[
            "Traceback (most recent call last):",
            "  File \"/app.py\", line 30, in decide",
            "    return lookup(call)",
            "  File \"/app.py\", line 21, in lookup",
            "    return MENU[digits]",
            "           ~~~~^^^^^^^^",
            "KeyError: '9'",
            "",
            "thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1280:25:",
            "Python function raised an exception",
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        ]);
        assert_eq!(
            last_words(&log).as_deref(),
            Some("KeyError: '9' (at File \"/app.py\", line 21, in lookup)")
        );
    }

    /// As componentize-js 0.23 prints an uncaught exception: its message, then its stack.
    #[test]
    fn a_javascript_exception_is_its_message_and_where_it_was_thrown() {
        let log = stderr(&[
            "can't access property \"toUpperCase\", MENU[call.digits] is undefined",
            "Stack:",
            "  decide@index.js:14:54",
            "  export_decide@/tmp/4f8a9e060705/sources/initializer.js:645:15",
            "",
            "Redirecting call to abort() to mozalloc_abort",
            "",
        ]);
        assert_eq!(
            last_words(&log).as_deref(),
            Some(
                "can't access property \"toUpperCase\", MENU[call.digits] is undefined \
                 (at decide@index.js:14:54)"
            )
        );
    }

    #[test]
    fn the_last_of_several_tracebacks_counts() {
        let log = stderr(&[
            "Traceback (most recent call last):",
            "  File \"/app.py\", line 3, in decide",
            "ValueError: first",
            "",
            "During handling of the above exception, another exception occurred:",
            "",
            "Traceback (most recent call last):",
            "  File \"/app.py\", line 5, in decide",
            "RuntimeError: second",
        ]);
        assert_eq!(
            last_words(&log).as_deref(),
            Some("RuntimeError: second (at File \"/app.py\", line 5, in decide)")
        );
    }

    #[test]
    fn other_output_and_nothing_at_all() {
        let mut log = stderr(&[
            "TypeError: MENU[call.digits] is undefined",
            "decide@index.js:14:5",
        ]);
        log.push(LogLine {
            level: LogLevel::Info,
            message: "a log line, not stderr".into(),
        });
        assert_eq!(
            last_words(&log).as_deref(),
            Some("TypeError: MENU[call.digits] is undefined / decide@index.js:14:5")
        );
        assert_eq!(last_words(&stderr(&["   ", ""])), None);
        assert_eq!(last_words(&[]), None);
    }

    /// A plugin without a stderr (built for `wasm32-unknown-unknown`): the Rust SDK's panic hook
    /// logs the message at `error`, one line of several, as the last thing the plugin does.
    #[test]
    fn without_stderr_a_panic_logged_last_is_heard() {
        let line = |level, message: &str| LogLine {
            level,
            message: message.to_owned(),
        };
        let panic = "panicked at src/lib.rs:13:37:\nnine is not on the menu";
        let mut log = vec![
            line(LogLevel::Error, "the CRM answered 500"),
            line(LogLevel::Error, panic),
        ];
        assert_eq!(
            last_words(&log).as_deref(),
            Some("panicked at src/lib.rs:13:37: / nine is not on the menu")
        );
        // Stderr, when there is some, is what the guest said last.
        let wasi = "thread '<unnamed>' panicked at src/lib.rs:2:1:";
        log.push(line(LogLevel::Stderr, wasi));
        assert_eq!(last_words(&log).as_deref(), Some(wasi));
        // An error the plugin logged is not its last words: not a panic's, or not the last line
        // (a trap of another kind came after it), or not at `error`.
        for quiet in [
            vec![line(LogLevel::Error, "the CRM answered 500")],
            vec![line(LogLevel::Error, panic), line(LogLevel::Info, "after")],
            vec![line(LogLevel::Warn, panic)],
        ] {
            assert_eq!(last_words(&quiet), None, "{quiet:?}");
        }
    }

    #[test]
    fn last_words_are_capped() {
        let long = "x".repeat(4 * MAX_LAST_WORDS_BYTES);
        let said = last_words(&stderr(&[&long])).unwrap();
        assert_eq!(said.len(), MAX_LAST_WORDS_BYTES);
    }
}
