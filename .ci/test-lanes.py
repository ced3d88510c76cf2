#!/usr/bin/env python3
"""Runs the workspace's test binaries in lanes, one or several at once,
and prints each one's time.

Why lanes: most of the suite waits (on the registry it starts, on skopeo,
podman, the docker engine, S3, Swift, sleeps), and `cargo test` runs one
binary after the other, each with as many test threads as cores; two
binaries at a time keep both cores busy while one waits. CI runs one lane
for now (.ci/run says why).

Usage: test-lanes.py ARTIFACTS.json [LANES]
ARTIFACTS.json holds the messages of
`cargo test --workspace --locked --no-run --message-format=json`. Each
binary runs as `cargo test` runs it (in its package's folder, with
CARGO_MANIFEST_DIR and CARGO_PKG_NAME set); its output is printed whole
once it ends, so that lanes never interleave. Exits non-zero when a binary
fails; doc tests are not here (`cargo test --doc` runs them).
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

# Started first, longest first, so that the lanes end together: the
# binaries that took over 20 s in CI (2026-12-08). Any binary not named
# here runs after these, in cargo's order.
SLOW_FIRST = [
    "v2_crash",
    "storage_drivers",
    "container_image",
    "gc",
    "retention",
    "web_ui",
    "v2_api",
    "v2_hostile",
    "quota",
    "v1_bridge",
    "search",
    "mirror",
    "storage_swift",
    "mirror_v1",
    "repository_delete",
    "v1_api",
    "notifications",
    "multi_host",
    "metrics_health",
]


def binaries(path):
    """The test executables of the messages in `path`, with their package."""
    found = []
    with open(path, encoding="utf-8") as messages:
        for line in messages:
            line = line.strip()
            if not line.startswith("{"):
                continue
            message = json.loads(line)
            if message.get("reason") != "compiler-artifact":
                continue
            if not message.get("profile", {}).get("test") or not message.get("executable"):
                continue
            target = message["target"]
            manifest = message["manifest_path"]
            package = message["package_id"]
            found.append(
                {
                    "name": target["name"],
                    "kind": target["kind"][0],
                    "exe": message["executable"],
                    "dir": os.path.dirname(manifest),
                    "package": package,
                }
            )
    return found


def package_name(binary):
    # A package id names its package in the URL's last part
    # (`path+file:///work/main#registry-v1@0.1.0`, or `...#0.1.0` when the
    # folder is the package's name).
    spec = binary["package"].rsplit("#", 1)[-1]
    if "@" in spec:
        return spec.split("@", 1)[0]
    return os.path.basename(binary["dir"])


def toolchain_env():
    """What cargo and rustup give the test binaries they run: the toolchain
    the run uses (rustup's proxies read RUSTUP_TOOLCHAIN, so a cargo the
    tests start, as docker/build.sh does, builds with it, whatever
    rust-toolchain file a crate's folder holds) and that cargo's path."""
    env = {}
    try:
        active = subprocess.run(
            ["rustup", "show", "active-toolchain"], capture_output=True, text=True, check=True
        ).stdout.split()
        cargo = subprocess.run(
            ["rustup", "which", "cargo"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return env  # no rustup: the cargo on PATH is the one
    if active:
        env.setdefault("RUSTUP_TOOLCHAIN", active[0])
    if cargo:
        env.setdefault("CARGO", cargo)
    return env


TOOLCHAIN = {}


def run(binary, results, lock):
    env = dict(os.environ)
    for key, value in TOOLCHAIN.items():
        env.setdefault(key, value)
    env["CARGO_MANIFEST_DIR"] = binary["dir"]
    env["CARGO_PKG_NAME"] = package_name(binary)
    label = f"{env['CARGO_PKG_NAME']} {binary['kind']} {binary['name']}"
    start = time.monotonic()
    with tempfile.TemporaryFile() as out:
        code = subprocess.call(
            [binary["exe"]], cwd=binary["dir"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        took = time.monotonic() - start
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    with lock:
        verdict = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"\n--- {label}: {verdict}, {took:.1f} s", flush=True)
        sys.stdout.write(text)
        sys.stdout.flush()
        results.append((label, code, took))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    lanes = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    TOOLCHAIN.update(toolchain_env())
    todo = binaries(sys.argv[1])
    if not todo:
        sys.exit("test-lanes: no test binary in " + sys.argv[1])
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    todo.sort(key=lambda b: rank.get(b["name"], len(rank)))
    results, lock, queue = [], threading.Lock(), list(todo)

    def lane():
        while True:
            with lock:
                if not queue:
                    return
                binary = queue.pop(0)
            run(binary, results, lock)

    start = time.monotonic()
    threads = [threading.Thread(target=lane) for _ in range(max(1, lanes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    failed = [label for label, code, _ in results if code != 0]
    print(f"\n=== {len(results)} test binaries in {lanes} lanes, {time.monotonic() - start:.0f} s")
    for label, code, took in sorted(results, key=lambda r: -r[2]):
        print(f"{took:8.1f} s  {'ok' if code == 0 else 'FAILED'}  {label}")
    if failed:
        print("\nFAILED binaries: " + ", ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
