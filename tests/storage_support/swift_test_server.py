"""A real one-node OpenStack Swift for the storage tests, on loopback.

Debian's Swift (.ci/install-swift.sh): an account, a container, an object
server and a proxy, one process each (no workers of their own: forked from
one process that imported and patched everything once, for a start of
about two seconds), with memcached for tempauth's tokens. No updater,
replicator or auditor runs: account totals (X-Account-Object-Count,
X-Account-Bytes-Used) stay at 0; container listings are current at once.

Everything lives in one folder: swift.conf, the servers' configs, the rings
(part power 6, one replica, one device), the device's data and the logs
(log/*.log, log/*.out). Nothing is read from or written to /etc/swift:
Swift's opens under /etc/swift/ are sent to the folder, and its hash
prefix, policies and constraints reloaded from there (`set_swift_dir`),
before any server loads its config.

The proxy: tempauth with one user, `test:tester` / `testing` (.admin, so it
may set the account's temp-URL key), account `AUTH_test` created on first
use; bulk, tempurl, copy, slo and dlo.

Usage (with Debian's interpreter, the one that imports `swift`):

    /usr/bin/python3 swift_test_server.py [--dir D] [--port P] [--token-life S]
        [--until-signalled]

--dir D: the folder to use (created if missing, kept at exit); without it a
temporary folder that is removed at exit, in /dev/shm where it keeps
extended attributes (the object server syncs each object: memory makes
that free), else under $TMPDIR. --port P: the
proxy's port; without it a free one. The other ports are always free ones.
--token-life S: how long tempauth's tokens live (default a day).
--until-signalled: keep running when standard input closes (a caller
that gives it none); stop on SIGTERM or SIGINT only.

When the proxy hands out tokens and the account answers, it prints one line,
`ready <proxy port>`, on standard output; if it cannot start, one line
`error: <why>` and it exits with status 1. It then runs until its standard
input closes (or it gets SIGTERM/SIGINT), then stops every server and
memcached. Each server also dies with this process (PR_SET_PDEATHSIG).
"""

import argparse
import ctypes
import errno
import http.client
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

USER, KEY, ACCOUNT = "test:tester", "testing", "AUTH_test"
START_TIMEOUT = 60
ATTEMPTS = 3
SERVERS = ("account", "container", "object")


def die_with_parent():
    """In a child: SIGKILL when the launcher dies, however it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


# --- the server processes --------------------------------------------------


def point_swift_at(swift_dir):
    """Swift reads swift.conf (hash prefix and suffix, policies,
    constraints) from /etc/swift, some of it at import time: every open of a
    file under /etc/swift/ goes to the same name in swift_dir instead, and
    Swift's own globals are reloaded from there."""
    import builtins

    real_open = builtins.open

    def open_here(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            path = os.fsdecode(file)
            if path.startswith("/etc/swift/"):
                file = os.path.join(swift_dir, path[len("/etc/swift/"):])
        return real_open(file, *args, **kwargs)

    builtins.open = open_here
    from swift.common import utils

    utils.set_swift_dir(swift_dir)
    from swift.common import constraints, storage_policy

    storage_policy.reload_storage_policies()
    constraints.reload_constraints()
    # What the servers load, once, before they are forked.
    import swift.account.server  # noqa: F401
    import swift.common.wsgi  # noqa: F401
    import swift.container.server  # noqa: F401
    import swift.obj.server  # noqa: F401
    import swift.proxy.server  # noqa: F401


def serve(swift_dir, name):
    """One Swift server, in this (forked) process, on its config."""
    from swift.common import utils, wsgi

    log_path = os.path.join(swift_dir, "log", f"{name}.log")

    class FileLog(logging.FileHandler):
        """What Swift's loggers get instead of a syslog handler."""

        def __init__(self, *args, **kwargs):
            super().__init__(log_path)

        def format(self, record):
            stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
            return f"{stamp}.{int(record.msecs):03d} {super().format(record)}"

    utils.ThreadSafeSysLogHandler = FileLog
    return wsgi.run_wsgi(os.path.join(swift_dir, f"{name}-server.conf"), f"{name}-server")


# --- set-up ----------------------------------------------------------------


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_xattrs(folder):
    probe = os.path.join(folder, ".xattr-probe")
    try:
        with open(probe, "wb"):
            pass
        # Swift keeps an object's metadata in user.swift.metadata*.
        os.setxattr(probe, "user.swift.probe", b"x" * 2048)
        if os.getxattr(probe, "user.swift.probe") != b"x" * 2048:
            raise OSError(errno.EIO, "read back another value")
    except OSError as e:
        raise SystemExit(
            f"the folder {folder} does not keep extended attributes (user.*), "
            f"which Swift's object server needs ({e.strerror or e}): put it on "
            "ext4 or xfs (set TMPDIR, or --dir)"
        )
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass


def temporary_folder():
    """A folder of its own, in memory (/dev/shm) where that keeps xattrs:
    the object server syncs every object it writes, which a disk makes the
    slowest part of a test; nothing here needs to outlive the tests. Else
    under $TMPDIR."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        d = tempfile.mkdtemp(prefix="registry-swift-", dir=shm)
        try:
            check_xattrs(d)
            return d
        except SystemExit:
            shutil.rmtree(d, ignore_errors=True)
    return tempfile.mkdtemp(prefix="registry-swift-")


def write(path, text):
    with open(path, "w") as f:
        f.write(text.lstrip())


def write_swift_conf(d):
    write(
        os.path.join(d, "swift.conf"),
        """
[swift-hash]
swift_hash_path_prefix = registry-v1-test-prefix
swift_hash_path_suffix = registry-v1-test-suffix

[storage-policy:0]
name = Policy-0
default = yes
""",
    )


def write_configs(d, ports, token_life):
    user = pwd.getpwuid(os.getuid()).pw_name
    common = f"""
[DEFAULT]
bind_ip = 127.0.0.1
workers = 0
user = {user}
swift_dir = {d}
devices = {d}/srv
mount_check = false
bind_timeout = 2
"""
    for name, app in (("account", "account"), ("container", "container"), ("object", "object")):
        write(
            os.path.join(d, f"{name}-server.conf"),
            common
            + f"""
bind_port = {ports[name]}

[pipeline:main]
pipeline = {name}-server

[app:{name}-server]
use = egg:swift#{app}
""",
        )
    write(
        os.path.join(d, "proxy-server.conf"),
        common
        + f"""
bind_port = {ports['proxy']}

[pipeline:main]
pipeline = catch_errors gatekeeper proxy_logging cache listing_formats bulk tempurl tempauth copy slo dlo proxy_logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:proxy_logging]
use = egg:swift#proxy_logging

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{ports['memcached']}

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:bulk]
use = egg:swift#bulk

[filter:tempurl]
use = egg:swift#tempurl

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
token_life = {token_life}

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
""",
    )


def build_rings(d, ports):
    from swift.common.ring import RingBuilder

    for name in SERVERS:
        builder = RingBuilder(6, 1, 1)
        builder.add_dev(
            {
                "region": 1,
                "zone": 1,
                "ip": "127.0.0.1",
                "port": ports[name],
                "device": "d1",
                "weight": 1,
            }
        )
        builder.rebalance()
        builder.get_ring().save(os.path.join(d, f"{name}.ring.gz"))


# --- running ---------------------------------------------------------------


class Forked:
    """A forked child, with the part of Popen's interface used here."""

    def __init__(self, pid):
        self.pid, self.returncode = pid, None

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def send_signal(self, sig):
        if self.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.time() + timeout
        while self.poll() is None:
            if deadline is not None and time.time() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.02)
        return self.returncode


def output(d, name):
    return os.open(os.path.join(d, "log", f"{name}.out"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)


def fork(d, name, run):
    """A child process that runs run(d, name), its output to log/NAME.out,
    killed when this process dies."""
    out = output(d, name)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            die_with_parent()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            status = run(d, name)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status or 0)
    os.close(out)
    return pid


def servers(d, _name):
    """The four Swift servers, forked from here once eventlet has patched
    this process (which takes most of a second: once, not four times).
    Exits, stopping the others, when one of them stops; SIGTERM stops them
    all."""
    from swift.common import utils

    utils.eventlet_monkey_patch()
    children = {}

    def stop(*_):
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except OSError:
                pass
        os._exit(1)

    signal.signal(signal.SIGTERM, stop)
    for name in SERVERS + ("proxy",):
        children[fork(d, name, serve)] = name
    pid, status = os.wait()
    print(f"the {children.pop(pid)} server exited with status {os.waitstatus_to_exitcode(status)}", flush=True)
    stop()


class Cluster:
    def __init__(self, d):
        self.d = d
        self.children = []  # (name, Popen or Forked)

    def start(self, ports):
        memcached = ["memcached", "-l", "127.0.0.1", "-p", str(ports["memcached"]), "-U", "0", "-m", "64"]
        if os.geteuid() == 0:
            memcached += ["-u", "root"]
        out = output(self.d, "memcached")
        child = subprocess.Popen(
            memcached, stdin=subprocess.DEVNULL, stdout=out, stderr=out, preexec_fn=die_with_parent
        )
        os.close(out)
        self.children.append(("memcached", child))
        self.children.append(("Swift", Forked(fork(self.d, "servers", servers))))

    def dead(self):
        for name, child in self.children:
            if child.poll() is not None:
                return f"{name} exited with status {child.returncode}"
        return None

    def stop(self):
        for name, child in self.children:
            if child.poll() is None:
                # memcached takes most of a second to shut down; it has
                # nothing to keep.
                child.kill() if name == "memcached" else child.terminate()
        deadline = time.time() + 5
        for _, child in self.children:
            try:
                child.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children = []


def request(port, method, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp
    finally:
        conn.close()


def answers_tcp(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_ready(cluster, ports):
    """None when the whole chain answers, else why not."""
    deadline = time.time() + START_TIMEOUT
    token = None
    while time.time() < deadline:
        why = cluster.dead()
        if why:
            return why
        try:
            if not all(answers_tcp(ports[n]) for n in ("memcached",) + SERVERS):
                raise OSError("not yet")
            if token is None:
                status, resp = request(
                    ports["proxy"], "GET", "/auth/v1.0", {"X-Auth-User": USER, "X-Auth-Key": KEY}
                )
                if status == 200:
                    token = resp.getheader("X-Auth-Token")
            if token is not None:
                # Through the proxy to the account server (autocreate).
                status, _ = request(ports["proxy"], "HEAD", f"/v1/{ACCOUNT}", {"X-Auth-Token": token})
                if status // 100 == 2:
                    return None
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.05)
    return f"no answer within {START_TIMEOUT} s"


def log_tail(d):
    out = []
    for name in ("memcached", "servers") + SERVERS + ("proxy",):
        path = os.path.join(d, "log", f"{name}.out")
        try:
            with open(path, errors="replace") as f:
                text = f.read().strip()
        except OSError:
            continue
        if text:
            out.append(f"{name}: {text.splitlines()[-1]}")
    return "; ".join(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir")
    parser.add_argument("--port", type=int, default=0)
    # How long tempauth's tokens live, in seconds (its default: a day).
    parser.add_argument("--token-life", type=int, default=86400)
    # Stop on SIGTERM/SIGINT (or death) only, not when stdin closes: for a
    # caller that starts it with no stdin (the benchmark).
    parser.add_argument("--until-signalled", action="store_true")
    args = parser.parse_args()

    started = time.time()
    if args.dir:
        d, temporary = os.path.abspath(args.dir), False
        os.makedirs(d, exist_ok=True)
    else:
        d, temporary = temporary_folder(), True
    cluster = Cluster(d)
    stopping = threading.Event()
    ready = keep = False

    def finish(*_):
        if not ready:
            raise SystemExit("stopped by a signal")
        stopping.set()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    try:
        try:
            if shutil.which("memcached") is None:
                raise SystemExit("memcached is not installed (.ci/install-swift.sh)")
            os.makedirs(os.path.join(d, "srv", "d1"), exist_ok=True)
            os.makedirs(os.path.join(d, "log"), exist_ok=True)
            check_xattrs(os.path.join(d, "srv", "d1"))
            write_swift_conf(d)
            try:
                point_swift_at(d)
            except ImportError as e:
                raise SystemExit(f"{sys.executable} cannot import Swift ({e}): run .ci/install-swift.sh")
            why = None
            for _ in range(ATTEMPTS):
                ports = {n: free_port() for n in ("memcached",) + SERVERS}
                ports["proxy"] = args.port or free_port()
                write_configs(d, ports, args.token_life)
                build_rings(d, ports)
                cluster.start(ports)
                why = wait_ready(cluster, ports)
                if why is None:
                    break
                cluster.stop()
                why = f"{why} ({log_tail(d)})" if log_tail(d) else why
            if why is not None:
                keep = True  # for its logs
                raise SystemExit(f"Swift did not start: {why}; logs in {d}/log")
        except SystemExit as e:
            print(f"error: {e.code}", flush=True)
            sys.exit(1)
        ready = True
        print(f"ready {ports['proxy']}", flush=True)
        # From now on nothing for the caller on stdout or stderr: it may
        # have stopped reading.
        log = os.open(os.path.join(d, "log", "launcher.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(log, 1)
        os.dup2(log, 2)
        print(f"ready on {ports} in {time.time() - started:.1f} s", flush=True)

        def watch_stdin():
            try:
                while os.read(0, 4096):
                    pass
            except OSError:
                pass
            stopping.set()

        if not args.until_signalled:
            threading.Thread(target=watch_stdin, daemon=True).start()
        while not stopping.wait(1):
            why = cluster.dead()
            if why:
                print(f"warning: {why}", flush=True)
                break
        stopping.wait()
    finally:
        cluster.stop()
        if temporary and not keep:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
