//! BENCHMARKS.md from a run's results: plain data in, markdown out, no IO, so the layout
//! is tested without running anything.

/// One run's results, ready to print.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// When the run started (UTC).
    pub date: String,
    /// The command that produced it, e.g. `cargo xtask bench`.
    pub command: String,
    /// Wall time of the whole run, e.g. `4 min 10 s`.
    pub wall_time: String,
    /// `--quick`: shorter durations, numbers for development only.
    pub quick: bool,
    /// (what, value): kernel, cores, versions, commit.
    pub machine: Vec<(String, String)>,
    pub targets: Vec<Target>,
    pub sections: Vec<Section>,
}

/// A figure we hold ourselves to, beside what was measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub what: String,
    pub goal: String,
    pub measured: String,
    pub pass: bool,
}

/// One experiment: what it measures, how it was run, its tables.
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub title: String,
    pub about: String,
    /// Commands and settings, exactly as run (a code block).
    pub setup: Vec<String>,
    pub tables: Vec<Table>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

/// The whole file.
pub fn render(r: &Report) -> String {
    let mut out = String::from("# Benchmarks\n\n");
    out += &format!(
        "Written by `{}` on {}; its experiments ran one after another for {}. Every \
         figure is a count, or a ratio against a baseline measured in the same run on the \
         same machine.\n\n",
        r.command, r.date, r.wall_time
    );
    if r.quick {
        out += "> **Quick run** (`--quick`): shortened durations, for development only. \
                These numbers are not the benchmark; run `cargo xtask bench` without \
                `--quick` for those.\n\n";
    }
    out += "## Machine\n\n";
    let mut machine = Table::new(&["", ""]);
    for (k, v) in &r.machine {
        machine.row(vec![k.clone(), v.clone()]);
    }
    out += &table(&machine);
    out += "\n## Targets\n\n";
    let mut targets = Table::new(&["target", "goal", "measured", "result"]);
    for t in &r.targets {
        let result = if t.pass { "pass" } else { "**miss**" };
        targets.row(vec![
            t.what.clone(),
            t.goal.clone(),
            t.measured.clone(),
            result.into(),
        ]);
    }
    out += &table(&targets);
    for (i, s) in r.sections.iter().enumerate() {
        out += &format!("\n## {}. {}\n\n{}\n", i + 1, s.title, s.about.trim());
        if !s.setup.is_empty() {
            out += "\n```sh\n";
            for line in &s.setup {
                out += line;
                out += "\n";
            }
            out += "```\n";
        }
        for t in &s.tables {
            out += "\n";
            out += &table(t);
        }
        if !s.notes.is_empty() {
            out += "\n";
            for n in &s.notes {
                out += &format!("- {n}\n");
            }
        }
    }
    out
}

fn table(t: &Table) -> String {
    let line = |cells: &[String]| {
        let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut out = line(&t.header);
    out += &format!("|{}\n", " --- |".repeat(t.header.len()));
    for r in &t.rows {
        out += &line(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(quick: bool) -> Report {
        let mut t = Table::new(&["mode", "requests/s"]);
        t.row(vec!["without the agent".into(), "30000".into()]);
        t.row(vec!["a|b".into(), "1".into()]);
        Report {
            date: "2025-01-02 03:04 UTC".into(),
            command: "cargo xtask bench".into(),
            wall_time: "4 min 5 s".into(),
            quick,
            machine: vec![("kernel".into(), "6.18.0".into())],
            targets: vec![
                Target {
                    what: "throughput ratio".into(),
                    goal: ">= 0.97".into(),
                    measured: "0.99".into(),
                    pass: true,
                },
                Target {
                    what: "p99".into(),
                    goal: "< 2 ms".into(),
                    measured: "3.1 ms".into(),
                    pass: false,
                },
            ],
            sections: vec![Section {
                title: "Production overhead".into(),
                about: "wrk against nginx.".into(),
                setup: vec!["wrk -t1 -c16 -d5s --latency URL".into()],
                tables: vec![t],
                notes: vec!["medians of 3".into()],
            }],
        }
    }

    #[test]
    fn renders_header_machine_targets_and_sections() {
        let md = render(&report(false));
        let expected = "\
# Benchmarks

Written by `cargo xtask bench` on 2025-01-02 03:04 UTC; its experiments ran one after another for 4 min 5 s. Every figure is a count, or a ratio against a baseline measured in the same run on the same machine.

## Machine

|  |  |
| --- | --- |
| kernel | 6.18.0 |

## Targets

| target | goal | measured | result |
| --- | --- | --- | --- |
| throughput ratio | >= 0.97 | 0.99 | pass |
| p99 | < 2 ms | 3.1 ms | **miss** |

## 1. Production overhead

wrk against nginx.

```sh
wrk -t1 -c16 -d5s --latency URL
```

| mode | requests/s |
| --- | --- |
| without the agent | 30000 |
| a\\|b | 1 |

- medians of 3
";
        assert_eq!(md, expected);
    }

    #[test]
    fn a_quick_run_says_so() {
        assert!(!render(&report(false)).contains("Quick run"));
        assert!(render(&report(true)).contains("> **Quick run** (`--quick`)"));
    }
}
