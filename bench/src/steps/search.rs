//! Section 4: search latency at 100k repositories. The search work (issue
//! 5) owns that benchmark (`benches/search.rs`); this runs it when it is
//! there and shows what it printed.

use std::process::Command;

use anyhow::{bail, Context, Result};

use super::Ctx;
use crate::report::{Row, Section};

pub fn run(ctx: &Ctx, section: &mut Section) {
    let bench = ctx.root.join("benches/search.rs");
    if !bench.is_file() {
        section.rows.push(Row::Skipped {
            step: "search p50/p99 at 100k repositories".into(),
            reason: format!(
                "SLOT: {} (issue 5) is not in this tree yet; once it is, the suite runs \
                 `cargo bench --bench search` here and reports what it prints.",
                bench.display()
            ),
        });
        return;
    }
    section.step("search (benches/search.rs)", || {
        let text = cargo_bench(ctx)?;
        Ok(vec![Row::Verbatim {
            step: "`cargo bench --bench search`".into(),
            text,
        }])
    });
}

fn cargo_bench(ctx: &Ctx) -> Result<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&ctx.root)
        .args(["bench", "--package", "registry-v1", "--bench", "search"]);
    if ctx.plan.smoke {
        cmd.env("BENCH_SMOKE", "1");
    }
    let out = cmd.output().context("run cargo bench --bench search")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "cargo bench --bench search: {}\n{stdout}\n{}",
            out.status,
            tail.join("\n")
        );
    }
    Ok(stdout)
}
