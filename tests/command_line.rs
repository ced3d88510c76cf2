//! The command line's own documentation through the real binary: shell
//! completions that bash loads, man pages that `man` renders, each made
//! from the same definitions as `--help`, without a configuration.

mod common;

use std::process::Command;

/// Every command, as `--help` lists them.
const COMMANDS: &[&str] = &[
    "serve",
    "config",
    "reindex",
    "healthcheck",
    "bridge-digests",
    "migrate",
    "gc",
    "delete-repository",
    "completions",
    "man",
];

/// Environment that would break a command that read it: these two must not.
const BROKEN_ENV: &[(&str, &str)] = &[
    ("DOCKER_REGISTRY_CONFIG", "/nonexistent/config.yml"),
    ("REGISTRY_PORT", "not-a-port"),
];

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `--help` and the book cannot drift apart: every command `--help` lists
/// has its rows in `docs/src/command-line.md`, and they name every
/// option the command's own `--help` shows.
#[test]
fn the_book_has_every_command_and_option_of_help() {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/src/command-line.md"
    ))
    .unwrap();
    let help = text(&common::run(&["--help"], &[]).stdout);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert_eq!(commands.len(), COMMANDS.len(), "{help}");
    for command in commands {
        let row: String = page
            .lines()
            .filter(|l| l.starts_with("| ") && l.contains(&format!("`registry-v1 {command}")))
            .collect();
        assert!(
            !row.is_empty(),
            "docs/src/command-line.md has no row for `{command}`"
        );
        let own = text(&common::run(&[command, "--help"], &[]).stdout);
        // Each line of its Options section that starts with a flag.
        let options = own
            .lines()
            .skip_while(|l| !l.starts_with("Options:"))
            .filter(|l| l.trim_start().starts_with('-'))
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
            .map(|w| w.trim_end_matches(','))
            .filter(|w| *w != "--help" && *w != "--version");
        for option in options {
            assert!(
                row.contains(option),
                "the book's row for `{command}` does not name {option}: {row}"
            );
        }
    }
}

#[test]
fn help_lists_every_command() {
    let out = common::run(&["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for command in COMMANDS {
        assert!(help.contains(&format!("  {command} ")), "{command}: {help}");
        let out = common::run(&[command, "--help"], &[]);
        assert!(out.status.success(), "{command} --help");
    }
}

#[test]
fn bash_loads_the_completions_and_offers_the_commands() {
    let out = common::run(&["completions", "bash"], BROKEN_ENV);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("registry-v1.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    // Sourced, then asked what follows `registry-v1 g`, as bash asks on Tab.
    let probe = format!(
        "source {}; COMP_WORDS=(registry-v1 g); COMP_CWORD=1; COMP_LINE='registry-v1 g'; \
         COMP_POINT=13; $(complete -p registry-v1 | sed -E 's/.* -F ([^ ]+) .*/\\1/') \
         registry-v1 g registry-v1; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let asked = Command::new("bash").args(["-c", &probe]).output().unwrap();
    assert!(asked.status.success(), "{}", text(&asked.stderr));
    let offered = text(&asked.stdout);
    assert_eq!(offered.trim(), "gc", "{offered}");

    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = common::run(&["completions", shell], &[]);
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    let out = common::run(&["completions", "tcsh"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("possible values"));
}

#[test]
fn man_renders_a_page_for_the_command_and_each_subcommand() {
    let out = common::run(&["man"], BROKEN_ENV);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.contains(".TH registry-v1 1"), "{page}");
    // The environment the help explains is in the page too.
    assert!(page.contains("DOCKER_REGISTRY_CONFIG"), "{page}");

    let dir = tempfile::tempdir().unwrap();
    let out = common::run(&["man", "--dir", dir.path().to_str().unwrap()], BROKEN_ENV);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut pages = vec!["registry-v1.1".to_owned()];
    pages.extend(COMMANDS.iter().map(|c| format!("registry-v1-{c}.1")));
    for name in &pages {
        let path = dir.path().join(name);
        assert!(path.is_file(), "{name} not written");
        let rendered = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        assert!(
            rendered.status.success(),
            "{name}: {}",
            text(&rendered.stderr)
        );
        assert!(
            rendered.stderr.is_empty(),
            "{name}: {}",
            text(&rendered.stderr)
        );
        assert!(text(&rendered.stdout).contains("NAME"), "{name}");
    }
    let gc = text(&std::fs::read(dir.path().join("registry-v1-gc.1")).unwrap());
    assert!(gc.contains("dry\\-run"), "{gc}");
    // The hidden option stays hidden.
    assert!(!gc.contains("lease"), "{gc}");

    let out = common::run(&["man", "--dir", "/nonexistent/pages"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("man pages not written to /nonexistent/pages"),
        "{}",
        text(&out.stderr)
    );
}
