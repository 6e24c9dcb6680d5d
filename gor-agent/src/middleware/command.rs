//! The `--middleware` command line, split into a program and its arguments without a
//! shell (nothing is expanded, so what the operator wrote is exactly what runs), and the
//! start-up check that the program exists.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Splits a command line into program and arguments. Whitespace separates words; single
/// quotes group literally; double quotes group too, and inside them only `\"` and `\\`
/// are escapes (any other backslash is kept as written). Quotes may join parts of one
/// word (`a"b c"` is `ab c`), and `""` is an empty argument. No variables, globs or
/// other shell syntax. An empty command or an unbalanced quote is an error, worded for
/// the configuration report.
pub fn parse_command(s: &str) -> Result<(String, Vec<String>), String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether a word has started: `""` makes an empty word, whitespace does not.
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unbalanced single quote in `{s}`")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unbalanced double quote in `{s}`")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unbalanced double quote in `{s}`")),
                    }
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    let mut words = words.into_iter();
    match words.next() {
        Some(program) if !program.is_empty() => Ok((program, words.collect())),
        Some(_) => Err(format!("the program name is empty in `{s}`")),
        None => Err("the command is empty; expected a program and its arguments".into()),
    }
}

/// Checks that `program` names an executable file, as a path when it contains a `/` and
/// otherwise through `PATH`, the way the child will be started. For the configuration
/// check at start-up, so that a typo is reported at once rather than as endless restarts.
pub fn check_program(program: &str) -> Result<(), String> {
    if program.is_empty() {
        return Err("the program name is empty".into());
    }
    if program.contains('/') {
        return executable(Path::new(program))
            .map_err(|why| format!("middleware program `{program}` {why}"));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| executable(p).is_ok());
    match found {
        Some(_) => Ok(()),
        None => Err(format!(
            "middleware program `{program}` is not an executable file in any PATH directory \
             ({}); give its full path or install it",
            std::env::split_paths(&path)
                .map(|p: PathBuf| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        )),
    }
}

/// Why `path` cannot be executed, if it cannot.
fn executable(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a file".into());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err("is not executable (no x permission)".into());
    }
    Ok(())
}
