//! What every stage's settings share: the error collector that one validation pass fills
//! with every invalid value (its setting's `GOR_*` name, the value, what is accepted), and
//! the parsers of the units that settings are written in (durations, sizes, counts).
//!
//! Each stage declares its own settings (a clap `Args` struct, the environment name
//! spelled once, in its `#[arg(env = ...)]` attribute) and a pure `validate` that reports
//! into [`Problems`]; the name in an error is read back from clap's metadata of the
//! stage's `Args` ([`env_name`]), so it can never differ from the variable clap reads.
//! This module depends on no other module of the agent, so every stage can use it.

use std::{
    any::TypeId,
    collections::HashMap,
    sync::{Mutex, OnceLock},
    time::Duration,
};

/// One invalid setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable, e.g. `GOR_PORTS`.
    pub setting: &'static str,
    pub value: String,
    pub expected: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={:?} is invalid: expected {}",
            self.setting, self.value, self.expected
        )
    }
}

/// The errors of one pass (validation, or resolving against the host), all of them.
#[derive(Debug, Default)]
pub struct Problems {
    pub errors: Vec<ConfigError>,
}

impl Problems {
    /// The collector as seen by the settings of `A`: errors are named by `A`'s arg ids.
    pub fn of<A: clap::Args + 'static>(&mut self) -> Stage<'_, A> {
        Stage {
            problems: self,
            args: std::marker::PhantomData,
        }
    }

    /// `Ok(())` when nothing was reported.
    pub fn finish(self) -> Result<(), Vec<ConfigError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// [`Problems`] for the settings declared by `A`.
pub struct Stage<'a, A> {
    problems: &'a mut Problems,
    args: std::marker::PhantomData<fn() -> A>,
}

impl<A: clap::Args + 'static> Stage<'_, A> {
    /// Parses `value` of the setting with arg id `id` (the field's name), recording the
    /// error under the setting's environment name.
    pub fn parse<T>(
        &mut self,
        id: &'static str,
        value: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.field(id, value, parse(value))
    }

    /// Records `parsed`'s error, if any, as the error of `value` of setting `id`.
    pub fn field<T>(
        &mut self,
        id: &'static str,
        value: &str,
        parsed: Result<T, String>,
    ) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(expected) => {
                self.problems.errors.push(ConfigError {
                    setting: env_name::<A>(id),
                    value: value.to_string(),
                    expected,
                });
                None
            }
        }
    }
}

/// What clap knows of one setting: its environment name and long flag.
#[derive(Clone, Copy)]
struct Names {
    env: &'static str,
    long: &'static str,
}

fn names<A: clap::Args + 'static>(id: &'static str) -> Names {
    // Keyed by type and id, each computed once: the names live as long as the process
    // (a few dozen settings), which lets errors carry `&'static str` like literals did.
    static NAMES: OnceLock<Mutex<HashMap<(TypeId, &'static str), Names>>> = OnceLock::new();
    let mut cache = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    *cache.entry((TypeId::of::<A>(), id)).or_insert_with(|| {
        let cmd = A::augment_args(clap::Command::new("gor-agent"));
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id() == id)
            .unwrap_or_else(|| panic!("{} declares no setting `{id}`", std::any::type_name::<A>()));
        let leak = |s: Option<&str>| -> &'static str { Box::leak(s.unwrap_or_default().into()) };
        Names {
            env: leak(arg.get_env().and_then(|e| e.to_str())),
            long: leak(arg.get_long()),
        }
    })
}

/// The environment name (`GOR_...`) of the setting with arg id `id` of `A`.
pub fn env_name<A: clap::Args + 'static>(id: &'static str) -> &'static str {
    names::<A>(id).env
}

/// The long flag (without `--`) of the setting with arg id `id` of `A`.
pub fn long_name<A: clap::Args + 'static>(id: &'static str) -> &'static str {
    names::<A>(id).long
}

/// `120s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "a duration such as `500ms`, `2s`, `1m` or `1h`";
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| EXPECTED.to_string())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(EXPECTED.into()),
    };
    if d.is_zero() {
        return Err(format!("{EXPECTED}, greater than zero"));
    }
    Ok(d)
}

/// `1024`, `64KiB`, `4MiB`, `1GiB` (also `K`, `M`, `G`, binary multiples).
pub fn parse_size(s: &str) -> Result<usize, String> {
    const EXPECTED: &str = "a size such as `65536`, `64KiB`, `4MiB` or `1GiB`";
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().map_err(|_| EXPECTED.to_string())?;
    let mult: usize = match unit {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(EXPECTED.into()),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| EXPECTED.to_string())
}

/// A positive whole number.
/// A whole number, 0 included: `0`, `2`.
pub fn parse_whole(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .map_err(|_| "a whole number (0 or more)".to_string())
}

pub fn parse_count(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| "a positive whole number".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Args)]
    struct Demo {
        /// A demo setting.
        #[arg(long = "demo-size", env = "GOR_DEMO_SIZE", default_value = "1KiB")]
        size: String,
    }

    #[test]
    fn errors_are_named_by_the_env_clap_reads() {
        assert_eq!(env_name::<Demo>("size"), "GOR_DEMO_SIZE");
        assert_eq!(long_name::<Demo>("size"), "demo-size");
        let mut p = Problems::default();
        assert_eq!(p.of::<Demo>().parse("size", "big", parse_size), None);
        assert_eq!(p.of::<Demo>().parse("size", "2KiB", parse_size), Some(2048));
        let errs = p.finish().unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].setting, "GOR_DEMO_SIZE");
        assert!(errs[0]
            .to_string()
            .starts_with("GOR_DEMO_SIZE=\"big\" is invalid"));
    }
}
