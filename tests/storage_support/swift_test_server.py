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

With --keystone, also a Keystone (identity API v3; Debian's, from
.ci/install-keystone.sh) on a free loopback port, and the proxy takes its
tokens too: authtoken (keystonemiddleware, delay_auth_decision) and
keystoneauth (reseller prefix `KEY_`) before tempauth, as devstack runs
both; tempauth's users, tokens and `AUTH_` accounts are as without it.
Keystone's config, sqlite database, fernet and credential keys are in the
folder's keystone/ (its log in log/keystone.*); /etc/keystone is not used.
In it: domain `Default`, region `RegionOne`; user `swiftuser` / `swiftpass`
with role `member` (one of keystoneauth's operator roles: admin, member) on
project `swiftproject`; the admin of `keystone-manage bootstrap`, `admin` /
`adminpass` on project `admin`; the proxy's own user `swift` /
`swiftservice` (admin on project `service`); service `swift`, type
`object-store`, whose public endpoint is
`http://127.0.0.1:<proxy port>/v1/KEY_$(project_id)s` and internal one the
same with `localhost`, so a token scoped to swiftproject lists
`.../v1/KEY_<swiftproject's id>`. Keystone is one process serving one
request at a time (sqlite), with its caches in memory. A start takes about
4.5 s instead of 1.5 (Keystone's imports, run while Swift starts). With it,
tempauth's tokens pass authtoken too, which asks Keystone about each one it
has not seen (and caches the answer): tempauth then needs Keystone up. A
Keystone token on an `AUTH_` account gets a 500 (Swift 2.30's tempauth
reads keystoneauth's identity as its own), not a 401.

Usage (with Debian's interpreter, the one that imports `swift`):

    /usr/bin/python3 swift_test_server.py [--dir D] [--port P] [--token-life S]
        [--listing-limit N] [--keystone [--keystone-token-life S]]
        [--until-signalled]

--dir D: the folder to use (created if missing, kept at exit); without it a
temporary folder that is removed at exit, in /dev/shm where it keeps
extended attributes (the object server syncs each object: memory makes
that free), else under $TMPDIR. --port P: the
proxy's port; without it a free one. The other ports are always free ones.
--token-life S: how long tempauth's tokens live (default a day).
--listing-limit N: the cluster's container_listing_limit (default Swift's,
10,000). --keystone: start Keystone too (above). --keystone-token-life S: how long
Keystone's tokens live (its [token] expiration; default Keystone's, an
hour). --until-signalled: keep running when standard input closes (a caller
that gives it none); stop on SIGTERM or SIGINT only.

When the proxy hands out tokens and the account answers, it prints one line,
`ready <proxy port>`, on standard output; if it cannot start, one line
`error: <why>` and it exits with status 1. With --keystone the line is
`ready <proxy port> <keystone port>`, once swiftuser's project-scoped v3
password login also works and its token creates (and deletes) a container
at the catalog's object-store URL. It then runs until its standard
input closes (or it gets SIGTERM/SIGINT), then stops every server and
memcached (and Keystone). Each server also dies with this process
(PR_SET_PDEATHSIG).
"""

import argparse
import ctypes
import errno
import http.client
import importlib.util
import json
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
import urllib.parse

USER, KEY, ACCOUNT = "test:tester", "testing", "AUTH_test"
START_TIMEOUT = 60
ATTEMPTS = 3
SERVERS = ("account", "container", "object")
# Keystone's (--keystone): names in the domain `Default`.
DOMAIN, REGION = "Default", "RegionOne"
KS_USER, KS_PASSWORD, KS_PROJECT = "swiftuser", "swiftpass", "swiftproject"
KS_ADMIN, KS_ADMIN_PASSWORD, KS_ADMIN_PROJECT = "admin", "adminpass", "admin"
# The proxy's own user, with which authtoken validates the tokens it gets
# (Swift's documented set-up: `swift`, admin on project `service`).
KS_SERVICE_USER, KS_SERVICE_PASSWORD, KS_SERVICE_PROJECT = "swift", "swiftservice", "service"


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


def write_swift_conf(d, listing_limit):
    # A lower container_listing_limit than Swift's 10,000 only when asked:
    # a cluster set so refuses the clients that ask for more.
    constraints = (
        ""
        if listing_limit is None
        else f"\n[swift-constraints]\ncontainer_listing_limit = {listing_limit}\n"
    )
    write(
        os.path.join(d, "swift.conf"),
        """
[swift-hash]
swift_hash_path_prefix = registry-v1-test-prefix
swift_hash_path_suffix = registry-v1-test-suffix

[storage-policy:0]
name = Policy-0
default = yes
"""
        + constraints,
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
    pipeline = "catch_errors gatekeeper proxy_logging cache listing_formats bulk tempurl tempauth copy slo dlo proxy_logging proxy-server"
    keystone = ""
    if "keystone" in ports:
        # Keystone's tokens beside tempauth's, in devstack's order: authtoken
        # validates any token with Keystone, but with delay_auth_decision
        # lets an invalid one (tempauth's AUTH_tk...) through, marked so;
        # keystoneauth authorizes Keystone's identities on KEY_ accounts;
        # tempauth then takes its own tokens (AUTH_ prefix) as before.
        pipeline = pipeline.replace(" tempauth ", " authtoken keystoneauth tempauth ")
        identity = f"http://127.0.0.1:{ports['keystone']}/v3"
        keystone = f"""
[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
www_authenticate_uri = {identity}
auth_url = {identity}
auth_type = password
user_domain_id = default
project_domain_id = default
project_name = {KS_SERVICE_PROJECT}
username = {KS_SERVICE_USER}
password = {KS_SERVICE_PASSWORD}
delay_auth_decision = true
# Validated tokens in the proxy's memcached (until they expire).
cache = swift.cache
include_service_catalog = false

[filter:keystoneauth]
use = egg:swift#keystoneauth
reseller_prefix = KEY_
operator_roles = admin, member
"""
    write(
        os.path.join(d, "proxy-server.conf"),
        common
        + f"""
bind_port = {ports['proxy']}

[pipeline:main]
pipeline = {pipeline}

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
"""
        + keystone,
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


# --- Keystone (--keystone) -------------------------------------------------


def write_keystone_conf(d, token_life):
    """keystone/ afresh (a new database and keys on each attempt) with its
    config. Every path Keystone would take from /etc/keystone is set here:
    its keys' folders, and the policy file and folder (absent: the policy
    in Keystone's code applies), which it would otherwise look for beside
    its config and then in /etc/keystone."""
    k = os.path.join(d, "keystone")
    shutil.rmtree(k, ignore_errors=True)
    # An empty keystone.conf.d: Keystone's middlewares, which search for
    # one (see prepare_keystone), find it here and look no further
    # (/etc/keystone/keystone.conf.d).
    os.makedirs(os.path.join(k, "keystone.conf.d"))
    expiration = "" if token_life is None else f"expiration = {token_life}\n"
    write(
        os.path.join(k, "keystone.conf"),
        f"""
[DEFAULT]
log_file = {d}/log/keystone.log

[database]
connection = sqlite:///{k}/keystone.db

[token]
provider = fernet
{expiration}
[fernet_tokens]
key_repository = {k}/fernet-keys

[fernet_receipts]
key_repository = {k}/fernet-keys

[credential]
key_repository = {k}/credential-keys

[identity]
# bcrypt's least: each password login costs milliseconds, not a quarter
# of a second.
password_hash_rounds = 4
# bcrypt's own limit (Keystone warns at each login if it is more).
max_password_length = 72

[cache]
# Keystone's caches in its own memory (it is one process): a login takes
# ~15 ms instead of ~95, a token's validation by the proxy likewise.
enabled = true
backend = dogpile.cache.memory

[oslo_policy]
policy_file = {k}/policy.yaml
policy_dirs = {k}/policy.d
""",
    )


def serve_keystone(k):
    """Keystone, in this process (a new interpreter: nothing of Swift's or
    eventlet's): what `keystone-manage db_sync`, `fernet_setup`,
    `credential_setup` and `bootstrap` do, then the Swift users, project,
    service and endpoints, then its WSGI app (what keystone-wsgi-public
    serves) on 127.0.0.1. All in one process, because each import of
    Keystone takes seconds: five keystone-manage runs and a server would
    take five times as long. Its ports, Keystone's and the proxy's, come as
    one line on standard input once the imports are done."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    import uuid
    from wsgiref import simple_server

    import keystone.conf
    from keystone.cmd import bootstrap
    from keystone.common import fernet_utils, provider_api, sql
    from keystone.common.sql import upgrades
    from keystone.credential.providers import fernet as credential_fernet
    from keystone.server.flask import application, core

    # The launcher chooses the ports (and writes k/keystone.conf) while
    # this process imports.
    try:
        port, proxy_port = (int(p) for p in sys.stdin.readline().split())
    except ValueError:
        return 1  # no ports: the launcher stopped first
    conf = keystone.conf.CONF
    # keystone.server.configure(), with no config searched for: only this
    # file, no keystone.conf.d (oslo.config would look in /etc/keystone).
    keystone.conf.configure()
    sql.initialize()
    keystone.conf.set_config_defaults()
    conf(
        args=[],
        project="keystone",
        default_config_files=[os.path.join(k, "keystone.conf")],
        default_config_dirs=[],
    )
    keystone.conf.setup_logging()

    upgrades.offline_sync_database_to_version()  # db_sync
    for group, max_keys in (
        ("fernet_tokens", conf.fernet_tokens.max_active_keys),  # fernet_setup
        ("credential", credential_fernet.MAX_ACTIVE_KEYS),  # credential_setup
    ):
        keys = fernet_utils.FernetUtils(getattr(conf, group).key_repository, max_keys, group)
        keys.create_key_directory()
        if keys.validate_key_repository(requires_write=True):
            keys.initialize_key_repository()

    identity = f"http://127.0.0.1:{port}/v3"
    boot = bootstrap.Bootstrapper()  # loads Keystone's backends, once
    boot.admin_username, boot.admin_password = KS_ADMIN, KS_ADMIN_PASSWORD
    boot.project_name, boot.admin_role_name = KS_ADMIN_PROJECT, "admin"
    boot.service_name, boot.region_id = "keystone", REGION
    boot.public_url = boot.internal_url = boot.admin_url = identity
    boot.immutable_roles = True
    boot.bootstrap()  # domain default ("Default"), roles admin > member > reader

    providers = provider_api.ProviderAPIs

    def project(name):
        project_id = uuid.uuid4().hex
        providers.resource_api.create_project(
            project_id,
            {"id": project_id, "name": name, "domain_id": boot.default_domain_id, "enabled": True},
        )
        return project_id

    def user(name, password, project_id, role_id):
        ref = providers.identity_api.create_user(
            {"name": name, "password": password, "domain_id": boot.default_domain_id, "enabled": True}
        )
        providers.assignment_api.add_role_to_user_and_project(ref["id"], project_id, role_id)

    user(KS_USER, KS_PASSWORD, project(KS_PROJECT), boot.member_role_id)
    user(KS_SERVICE_USER, KS_SERVICE_PASSWORD, project(KS_SERVICE_PROJECT), boot.admin_role_id)
    service_id = uuid.uuid4().hex
    providers.catalog_api.create_service(
        service_id, {"id": service_id, "name": "swift", "type": "object-store", "enabled": True}
    )
    # Keystone puts the token's project id in for $(project_id)s.
    for interface, host in (("public", "127.0.0.1"), ("internal", "localhost")):
        endpoint_id = uuid.uuid4().hex
        providers.catalog_api.create_endpoint(
            endpoint_id,
            {
                "id": endpoint_id,
                "interface": interface,
                "url": f"http://{host}:{proxy_port}/v1/KEY_$(project_id)s",
                "service_id": service_id,
                "region_id": REGION,
                "enabled": True,
            },
        )

    # initialize_application() without its second configure and backends.
    app = core.setup_app_middleware(application.application_factory("public"))

    class Server(simple_server.WSGIServer):
        """One request at a time, as keystone-wsgi-public serves (Keystone
        on sqlite is not for threads), but room for many to wait."""

        request_queue_size = 128

    server = simple_server.make_server("127.0.0.1", port, app, server_class=Server)
    print(f"Keystone on {identity}", flush=True)
    server.serve_forever()


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
        self.keystone = None  # a Keystone process waiting for its ports

    def prepare_keystone(self):
        """Keystone's process, started ahead: its imports (the longest part
        of a start) run while this process loads Swift; start() then gives
        it its ports. A new interpreter on this file, not a fork: Keystone
        wants no eventlet, and nothing of Swift's."""
        k = os.path.join(self.d, "keystone")
        out = output(self.d, "keystone")
        self.keystone = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve-keystone", k],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=out,
            preexec_fn=die_with_parent,
            # Keystone's WSGI middlewares (healthcheck, cors, ...) each read
            # a keystone.conf of their own, found where oslo.config looks
            # by default: ~/.keystone/, ~/, then /etc/keystone/. With HOME
            # the keystone folder, they find ours there first.
            env=dict(os.environ, HOME=k),
        )
        os.close(out)

    def start(self, ports):
        if "keystone" in ports:
            if self.keystone is None:  # a second attempt
                self.prepare_keystone()
            child, self.keystone = self.keystone, None
            self.children.append(("Keystone", child))
            try:
                child.stdin.write(f"{ports['keystone']} {ports['proxy']}\n".encode())
                child.stdin.close()
            except BrokenPipeError:
                pass  # it died: dead() says so
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
        if self.keystone is not None:
            self.keystone.kill()  # never given its ports
            self.keystone.wait()
            self.keystone = None
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


def keystone_login(port):
    """swiftuser's v3 password login, scoped to swiftproject: (token, the
    catalog's public object-store URL), or None."""
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": KS_USER, "domain": {"name": DOMAIN}, "password": KS_PASSWORD}
                },
            },
            "scope": {"project": {"name": KS_PROJECT, "domain": {"name": DOMAIN}}},
        }
    }
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/v3/auth/tokens", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 201:
            return None
        catalog = json.loads(data)["token"]["catalog"]
    finally:
        conn.close()
    for service in catalog:
        if service["type"] == "object-store":
            for endpoint in service["endpoints"]:
                if endpoint["interface"] == "public":
                    return resp.getheader("X-Subject-Token"), endpoint["url"]
    return None


def keystone_works(port):
    """Whether a Keystone login's token creates a container at the
    catalog's URL (through authtoken and keystoneauth, account
    autocreated); the container is deleted again, so the tests find the
    account empty."""
    if not answers_tcp(port):
        return False
    try:
        login = keystone_login(port)
    except (ValueError, KeyError):  # not (yet) the JSON expected
        return False
    if login is None:
        return False
    token, url = login
    url = urllib.parse.urlsplit(url)
    path = f"{url.path}/keystone-ready-check"
    status, _ = request(url.port, "PUT", path, {"X-Auth-Token": token})
    if status // 100 != 2:
        return False
    status, _ = request(url.port, "DELETE", path, {"X-Auth-Token": token})
    return status // 100 == 2


def wait_ready(cluster, ports):
    """None when the whole chain answers, else why not."""
    deadline = time.time() + START_TIMEOUT
    token = None
    swift_ready = False
    # Without --keystone, nothing to wait for there.
    keystone_ready = "keystone" not in ports
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
            if token is not None and not swift_ready:
                # Through the proxy to the account server (autocreate).
                status, _ = request(ports["proxy"], "HEAD", f"/v1/{ACCOUNT}", {"X-Auth-Token": token})
                swift_ready = status // 100 == 2
            if swift_ready and not keystone_ready:
                keystone_ready = keystone_works(ports["keystone"])
            if swift_ready and keystone_ready:
                return None
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.05)
    return f"no answer within {START_TIMEOUT} s"


def log_tail(d):
    out = []
    for name in ("memcached", "servers") + SERVERS + ("proxy", "keystone"):
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
    # Swift's container_listing_limit, when lower than its default.
    parser.add_argument("--listing-limit", type=int)
    # A Keystone too, and its tokens taken by the proxy (see above).
    parser.add_argument("--keystone", action="store_true")
    # Its tokens' life, in seconds (Keystone's default: an hour).
    parser.add_argument("--keystone-token-life", type=int)
    # Internal: this file run as Keystone's process, by the launcher.
    parser.add_argument("--serve-keystone", metavar="KEYSTONE_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_keystone:
        return serve_keystone(args.serve_keystone)
    if args.keystone_token_life is not None and not args.keystone:
        parser.error("--keystone-token-life needs --keystone")

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
            if args.keystone:
                if not all(importlib.util.find_spec(m) for m in ("keystone", "keystonemiddleware")):
                    raise SystemExit(f"{sys.executable} cannot import Keystone: run .ci/install-keystone.sh")
                cluster.prepare_keystone()
            write_swift_conf(d, args.listing_limit)
            try:
                point_swift_at(d)
            except ImportError as e:
                raise SystemExit(f"{sys.executable} cannot import Swift ({e}): run .ci/install-swift.sh")
            why = None
            for _ in range(ATTEMPTS):
                ports = {n: free_port() for n in ("memcached",) + SERVERS}
                ports["proxy"] = args.port or free_port()
                if args.keystone:
                    ports["keystone"] = free_port()
                    write_keystone_conf(d, args.keystone_token_life)
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
                what = "Swift with Keystone" if args.keystone else "Swift"
                raise SystemExit(f"{what} did not start: {why}; logs in {d}/log")
        except SystemExit as e:
            print(f"error: {e.code}", flush=True)
            sys.exit(1)
        ready = True
        if args.keystone:
            print(f"ready {ports['proxy']} {ports['keystone']}", flush=True)
        else:
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
