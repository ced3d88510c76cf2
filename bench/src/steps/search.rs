//! Section 4: search latency at 100k repositories. The search work (issue
//! 5) owns that benchmark (`benches/search.rs`); this runs it when it is
//! there and shows what it printed.

use anyhow::{bail, Context, Result};

use super::Ctx;
use crate::report::{Row, Section};

pub fn run(ctx: &Ctx, section: &mut Section) {
    let bench = ctx.root.join("benches/search.rs");
    if !bench.is_file() {
        section.rows.push(Row::Skipped {
            step: "search p50/p99 at 100k repositories".into(),
            reason: format!(
                "SLOT: {} (issue 5) is not in this tree; when it is, the suite runs \
                 `cargo bench --bench search` here and reports what it prints.",
                bench.display()
            ),
        });
        return;
    }
    section.step("search (benches/search.rs)", || {
        let text = cargo_bench(ctx)?;
        Ok(vec![Row::Verbatim {
            step: format!(
                "`{}cargo {} --bench search` (its own baseline: the plain `LIKE` scan \
                 of the old registry)",
                if ctx.plan.smoke {
                    "SEARCH_BENCH_SMOKE=1 "
                } else {
                    ""
                },
                if ctx.plan.smoke { "test" } else { "bench" }
            ),
            text,
        }])
    });
}

/// Runs the search benchmark: `cargo bench` (optimised build, 100k
/// repositories); in a smoke run its short version in the test build
/// (`cargo test --bench`, which runs a harness-less bench's `main`), so as
/// not to compile the whole project once more in release mode.
fn cargo_bench(ctx: &Ctx) -> Result<String> {
    let mut cmd = crate::tools::cargo(&ctx.root);
    let how = if ctx.plan.smoke { "test" } else { "bench" };
    cmd.args([how, "--package", "registry-v1", "--bench", "search"]);
    if ctx.plan.smoke {
        cmd.env("SEARCH_BENCH_SMOKE", "1");
    }
    let out = cmd
        .output()
        .with_context(|| format!("run cargo {how} --bench search"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "cargo {how} --bench search: {}\n{stdout}\n{}",
            out.status,
            tail.join("\n")
        );
    }
    Ok(stdout)
}
