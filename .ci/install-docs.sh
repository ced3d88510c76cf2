#!/usr/bin/env bash
# The book's tools (step "book" of .ci/run): mdBook, and mdbook-linkcheck,
# its backend that checks every link inside the book without following web
# links. Both from crates.io, built here with the machine's cargo;
# idempotent: a tool already installed at the right version is kept.
#
# The versions go together: mdbook-linkcheck 0.7.7 is built on the mdbook
# 0.4 library and reads the book as mdbook 0.4 hands it to a backend; the
# pair was checked with mdbook 0.4.52 (not with 0.5). Move neither without
# the other, and build the book (`mdbook build docs`) after.
#
# mdbook is built without its `serve` and `watch` features (a web server and
# a file watcher: many more crates to compile, for what CI never runs);
# `search` is kept, so the book built here is the book readers get. For
# `mdbook serve docs` while writing, install it once with its defaults:
#     cargo install --locked mdbook --version 0.4.52
# Both builds share one target folder, so the crates they both use are
# compiled once, and both are debug builds (`--debug`): no optimisation
# passes to compile, for a book of some twenty pages that builds in
# moments either way.
set -euo pipefail

MDBOOK_VERSION=0.4.52
LINKCHECK_VERSION=0.7.7

bin="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$bin:$PATH"
target="${TMPDIR:-/tmp}/registry-v1-docs-tools"

installed() { # COMMAND VERSION: whether COMMAND --version names VERSION
    command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -qw "v\?$2"
}

if installed mdbook "$MDBOOK_VERSION"; then
    echo "mdbook $MDBOOK_VERSION: installed"
else
    CARGO_TARGET_DIR="$target" cargo install --locked --force --debug mdbook \
        --version "$MDBOOK_VERSION" --no-default-features --features search
fi

if installed mdbook-linkcheck "$LINKCHECK_VERSION"; then
    echo "mdbook-linkcheck $LINKCHECK_VERSION: installed"
else
    CARGO_TARGET_DIR="$target" cargo install --locked --force --debug mdbook-linkcheck \
        --version "$LINKCHECK_VERSION"
fi
rm -rf "$target"
