//! The figures of a run: printed as a table, written as BENCHMARKS.md.

use std::fmt::Write as _;

use crate::machine::Machine;
use crate::stats::Samples;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    MegabytesPerSecond,
    RequestsPerSecond,
    Milliseconds,
    Mebibytes,
    /// Thousands of bytes (a page's weight).
    Kilobytes,
    Seconds,
    /// Server CPU time per GB moved.
    CpuMsPerGb,
    /// Server CPU time per request.
    CpuUsPerRequest,
}

impl Unit {
    fn suffix(self) -> &'static str {
        match self {
            Unit::MegabytesPerSecond => "MB/s",
            Unit::RequestsPerSecond => "req/s",
            Unit::Milliseconds => "ms",
            Unit::Mebibytes => "MiB",
            Unit::Kilobytes => "KB",
            Unit::Seconds => "s",
            Unit::CpuMsPerGb => "ms CPU/GB",
            Unit::CpuUsPerRequest => "µs CPU/req",
        }
    }

    /// Whether a smaller value is the better one (time, CPU, memory).
    pub fn lower_is_better(self) -> bool {
        matches!(
            self,
            Unit::Milliseconds
                | Unit::Mebibytes
                | Unit::Kilobytes
                | Unit::Seconds
                | Unit::CpuMsPerGb
                | Unit::CpuUsPerRequest
        )
    }

    fn format(self, v: f64) -> String {
        if v.is_nan() {
            return "-".into();
        }
        let digits = match self {
            Unit::Milliseconds | Unit::Seconds if v < 10.0 => 2,
            Unit::Mebibytes
            | Unit::Kilobytes
            | Unit::Milliseconds
            | Unit::Seconds
            | Unit::CpuUsPerRequest => 1,
            _ => 0,
        };
        format!("{v:.digits$}")
    }
}

/// What a figure should reach.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// The registry's median at least this fraction of the baseline's.
    RatioAtLeast(f64),
    /// Every run of the figure under this value.
    Below(f64),
}

#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub unit: Unit,
    pub value: Samples,
    /// What the same work costs without the registry, same run.
    pub baseline: Option<(String, Samples)>,
    /// The other registry doing the same work in the same run
    /// (distribution): the figure should be ahead of it.
    pub peer: Option<(String, Samples)>,
    pub goal: Option<Goal>,
    /// The 1-minute load average when the figure was taken (start, end):
    /// a busy machine explains a slow or scattered figure.
    pub load: (f64, f64),
}

impl Figure {
    pub fn ratio(&self) -> Option<f64> {
        let (_, base) = self.baseline.as_ref()?;
        let r = self.value.median() / base.median();
        r.is_finite().then_some(r)
    }

    /// `None` without a goal.
    pub fn goal_met(&self) -> Option<bool> {
        match self.goal? {
            Goal::RatioAtLeast(r) => Some(self.ratio()? >= r),
            Goal::Below(limit) => Some(self.value.max() < limit),
        }
    }

    /// registry-v1 ÷ the peer registry, medians.
    pub fn peer_ratio(&self) -> Option<f64> {
        let (_, peer) = self.peer.as_ref()?;
        let r = self.value.median() / peer.median();
        r.is_finite().then_some(r)
    }

    /// Whether registry-v1's median is ahead of the peer's: above it for a
    /// speed, below it for a time, CPU or memory. `None` without a peer.
    pub fn ahead_of_peer(&self) -> Option<bool> {
        let r = self.peer_ratio()?;
        Some(if self.unit.lower_is_better() {
            r < 1.0
        } else {
            r > 1.0
        })
    }

    fn peer_text(&self) -> String {
        match (self.peer_ratio(), self.ahead_of_peer()) {
            (Some(r), Some(ahead)) => format!(
                "{:.0} %: {}",
                r * 100.0,
                if ahead { "ahead" } else { "BEHIND" }
            ),
            _ => "-".into(),
        }
    }

    fn cell(&self, s: &Samples) -> String {
        let u = self.unit;
        if s.runs() > 1 {
            format!(
                "{} {} ({}–{})",
                u.format(s.median()),
                u.suffix(),
                u.format(s.min()),
                u.format(s.max())
            )
        } else {
            format!("{} {}", u.format(s.median()), u.suffix())
        }
    }

    fn goal_text(&self) -> String {
        let Some(goal) = self.goal else {
            return String::new();
        };
        let what = match goal {
            Goal::RatioAtLeast(r) => format!("≥ {:.0} %", r * 100.0),
            Goal::Below(v) => format!("< {} {}", self.unit.format(v), self.unit.suffix()),
        };
        match self.goal_met() {
            Some(true) => format!("{what}: met"),
            Some(false) => format!("{what}: MISSED"),
            None => what,
        }
    }
}

/// The load average around a figure, or `-` for a figure that is a
/// snapshot rather than a run.
fn load_text(load: (f64, f64), arrow: &str) -> String {
    if load.0.is_nan() {
        "-".into()
    } else {
        format!("{:.1}{arrow}{:.1}", load.0, load.1)
    }
}

/// A figure on one line of the terminal table.
pub fn one_line(f: &Figure) -> String {
    let base = f.baseline.as_ref().map_or(String::new(), |(name, s)| {
        format!("  vs {name} {}", f.cell(s))
    });
    let ratio = f
        .ratio()
        .map_or(String::new(), |r| format!("  = {:.0} %", r * 100.0));
    let goal = f.goal_text();
    let goal = if goal.is_empty() {
        goal
    } else {
        format!("  [goal {goal}]")
    };
    let peer = f.peer.as_ref().map_or(String::new(), |(name, s)| {
        format!("  {name} {} ({})", f.cell(s), f.peer_text())
    });
    format!(
        "{:<40} {}{peer}{base}{ratio}{goal}  (load {})",
        f.name,
        f.cell(&f.value),
        load_text(f.load, "→")
    )
}

/// One line of a section: a figure, or why there is none.
#[derive(Debug, Clone)]
pub enum Row {
    Figure(Figure),
    Failed {
        step: String,
        error: String,
    },
    Skipped {
        step: String,
        reason: String,
    },
    /// Something worth knowing about the figures above it.
    Note {
        step: String,
        text: String,
    },
    /// Output of a benchmark owned by another part of the project, as it
    /// printed it.
    Verbatim {
        step: String,
        text: String,
    },
}

#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    pub rows: Vec<Row>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub sections: Vec<Section>,
}

impl Report {
    pub fn section(&mut self, title: &str) -> &mut Section {
        self.sections.push(Section {
            title: title.to_owned(),
            rows: Vec::new(),
        });
        self.sections.last_mut().expect("just pushed")
    }

    pub fn failures(&self) -> Vec<String> {
        self.sections
            .iter()
            .flat_map(|s| &s.rows)
            .filter_map(|r| match r {
                Row::Failed { step, error } => Some(format!("{step}: {error}")),
                _ => None,
            })
            .collect()
    }

    pub fn figures(&self) -> impl Iterator<Item = &Figure> {
        self.sections
            .iter()
            .flat_map(|s| &s.rows)
            .filter_map(|r| match r {
                Row::Figure(f) => Some(f),
                _ => None,
            })
    }

    /// The table for the terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for section in &self.sections {
            let _ = writeln!(out, "\n== {}", section.title);
            for row in &section.rows {
                match row {
                    Row::Figure(f) => {
                        let _ = writeln!(out, "  {}", one_line(f));
                    }
                    Row::Failed { step, error } => {
                        let _ = writeln!(out, "  {step:<34} FAILED: {error}");
                    }
                    Row::Skipped { step, reason } => {
                        let _ = writeln!(out, "  {step:<34} SKIPPED: {reason}");
                    }
                    Row::Note { step, text } => {
                        let _ = writeln!(out, "  {step:<34} note: {text}");
                    }
                    Row::Verbatim { step, text } => {
                        let _ = writeln!(out, "  {step}:");
                        for line in text.lines() {
                            let _ = writeln!(out, "    {line}");
                        }
                    }
                }
            }
        }
        out
    }

    /// BENCHMARKS.md: machine, date, every figure with its baseline and
    /// ratio, the findings, how to reproduce.
    pub fn markdown(&self, machine: &Machine, run: &str, findings: &str) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# registry-v1 benchmarks\n");
        let _ = writeln!(
            md,
            "Generated by the benchmark suite (`bench/`, see docs/src/benchmarks.md) on {}. \
             Every figure is the median of the runs, with the lowest and highest run in \
             brackets, next to a baseline measured in the same run on the same machine; \
             *ratio* is registry ÷ baseline; where a section also runs distribution, its \
             figure stands next to registry-v1's with their ratio, marked ahead or BEHIND. \
             Traffic is on 127.0.0.1 only. MB is 10^6 bytes, \
             MiB 2^20. *Load* is the 1-minute load average before → after the figure: other \
             work on the machine shows there.\n",
            machine.date
        );
        let _ = writeln!(md, "## Machine\n\n{}", machine.markdown());
        let _ = writeln!(md, "## Run\n\n{run}\n");
        for section in &self.sections {
            let _ = writeln!(md, "## {}\n", section.title);
            let figures: Vec<&Figure> = section
                .rows
                .iter()
                .filter_map(|r| match r {
                    Row::Figure(f) => Some(f),
                    _ => None,
                })
                .collect();
            // A section measured against another registry gets its columns.
            let peer = figures
                .iter()
                .find_map(|f| f.peer.as_ref().map(|p| p.0.clone()));
            if !figures.is_empty() {
                match &peer {
                    Some(name) => {
                        let _ = writeln!(
                            md,
                            "| figure | registry-v1 | {name} | registry-v1 ÷ {name} | baseline | ratio | goal | load |\n|---|---|---|---|---|---|---|---|"
                        );
                    }
                    None => {
                        let _ = writeln!(
                            md,
                            "| figure | registry-v1 | baseline | ratio | goal | load |\n|---|---|---|---|---|---|"
                        );
                    }
                }
                for f in figures {
                    let base = f
                        .baseline
                        .as_ref()
                        .map_or("-".into(), |(name, s)| format!("{name}: {}", f.cell(s)));
                    let ratio = f
                        .ratio()
                        .map_or("-".into(), |r| format!("{:.0} %", r * 100.0));
                    let goal = f.goal_text();
                    let peer_cells = if peer.is_some() {
                        let value = f.peer.as_ref().map_or("-".into(), |(_, s)| f.cell(s));
                        format!(" {value} | {} |", f.peer_text())
                    } else {
                        String::new()
                    };
                    let _ = writeln!(
                        md,
                        "| {} | {} |{peer_cells} {base} | {ratio} | {} | {} |",
                        f.name,
                        f.cell(&f.value),
                        if goal.is_empty() { "-" } else { &goal },
                        load_text(f.load, " → ")
                    );
                }
                md.push('\n');
            }
            for row in &section.rows {
                match row {
                    Row::Figure(_) => {}
                    Row::Failed { step, error } => {
                        let _ = writeln!(md, "**{step}: FAILED.** `{error}`\n");
                    }
                    Row::Skipped { step, reason } => {
                        let _ = writeln!(md, "**{step}: skipped.** {reason}\n");
                    }
                    Row::Note { step, text } => {
                        let _ = writeln!(md, "*{step}:* {text}\n");
                    }
                    Row::Verbatim { step, text } => {
                        let _ = writeln!(md, "{step}:\n\n```\n{}\n```\n", text.trim_end());
                    }
                }
            }
        }
        let missed: Vec<&Figure> = self
            .figures()
            .filter(|f| f.goal_met() == Some(false))
            .collect();
        let behind: Vec<&Figure> = self
            .figures()
            .filter(|f| f.ahead_of_peer() == Some(false))
            .collect();
        let _ = writeln!(md, "## Goals\n");
        if missed.is_empty() {
            let _ = writeln!(md, "Every figure with a goal met it in this run.\n");
        } else {
            let _ = writeln!(md, "Missed in this run:\n");
            for f in missed {
                let _ = writeln!(md, "- {}: {}", f.name, f.goal_text());
            }
            md.push('\n');
        }
        if self.figures().any(|f| f.peer.is_some()) {
            if behind.is_empty() {
                let _ = writeln!(
                    md,
                    "Every figure measured against another registry is ahead of it.\n"
                );
            } else {
                let _ = writeln!(md, "Behind the other registry in this run:\n");
                for f in behind {
                    let name = f.peer.as_ref().map_or("", |p| p.0.as_str());
                    let _ = writeln!(md, "- {}: {} of {name}", f.name, f.peer_text());
                }
                md.push('\n');
            }
        }
        if !findings.trim().is_empty() {
            let _ = writeln!(md, "{}\n", findings.trim_end());
        }
        let _ = writeln!(
            md,
            "## How to reproduce\n\n\
             ```\n\
             bash .ci/install-bench.sh      # once, as root: nginx, wrk, openssl, moto, distribution, skopeo\n\
             bash bench/run                 # 25 to 35 minutes; writes BENCHMARKS.md\n\
             BENCH_SMOKE=1 bash bench/run   # a short check that every step runs\n\
             ```\n\n\
             `bash bench/run --help` lists the sizes, repetitions and durations that can be \
             changed; docs/src/benchmarks.md says what each figure measures."
        );
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(value: f64, base: f64, goal: Goal) -> Figure {
        Figure {
            name: "x".into(),
            unit: Unit::MegabytesPerSecond,
            value: Samples::one(value),
            baseline: Some(("nginx".into(), Samples::one(base))),
            peer: None,
            goal: Some(goal),
            load: (0.0, 0.0),
        }
    }

    #[test]
    fn goals_are_judged_on_the_ratio_of_medians_or_on_every_run() {
        assert_eq!(
            figure(90.0, 100.0, Goal::RatioAtLeast(0.9)).goal_met(),
            Some(true)
        );
        assert_eq!(
            figure(89.0, 100.0, Goal::RatioAtLeast(0.9)).goal_met(),
            Some(false)
        );
        assert_eq!(figure(63.0, 1.0, Goal::Below(64.0)).goal_met(), Some(true));
        assert_eq!(figure(64.0, 1.0, Goal::Below(64.0)).goal_met(), Some(false));
    }

    #[test]
    fn ahead_of_the_peer_means_faster_or_cheaper() {
        let mut f = figure(120.0, 100.0, Goal::RatioAtLeast(0.9));
        assert_eq!(f.ahead_of_peer(), None);
        f.peer = Some(("distribution".into(), Samples::one(100.0)));
        assert_eq!(f.ahead_of_peer(), Some(true));
        f.unit = Unit::CpuMsPerGb;
        assert_eq!(f.ahead_of_peer(), Some(false));
        f.peer = Some(("distribution".into(), Samples::one(150.0)));
        assert_eq!(f.ahead_of_peer(), Some(true));
    }
}
