//! The container image on the docker engine: built once per run with the
//! documented command (`bash docker/build.sh`), then run with the three
//! command lines of the old `registry` image (local disk on a bind-mounted
//! folder; S3 with search on; a mounted configuration file), pushed to and
//! pulled from over v1 (a docker 1.x client's requests) and v2 (skopeo),
//! stopped in the middle of an upload, and run read-only as its user.
//!
//! Where `docker info` fails, each test prints `SKIPPED: ...` and returns.
//! Host ports are the engine's pick on 127.0.0.1 (`-p 127.0.0.1::5000`
//! instead of `-p 5000:5000`: tests run side by side, and 5000 may be
//! taken). Every container, volume and the image carry a label of this run;
//! a janitor process removes them when this process ends, however it ends.

mod common;
mod v2_support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use v2_support::{descriptor, manifest_bytes, rand_suffix, s3_server, sha256, OCI_MANIFEST};

/// The user the image runs as (docker/rootfs.sh).
const UID: u32 = 65532;

// --- Commands -------------------------------------------------------------------

fn try_run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn run(program: &str, args: &[&str]) -> String {
    let out = try_run(program, args);
    assert!(
        out.status.success(),
        "{program} {}: {}\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn docker(args: &[&str]) -> String {
    run("docker", args)
}

fn docker_engine_answers() -> bool {
    let out = Command::new("timeout")
        .args(["20", "docker", "info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output();
    matches!(out, Ok(out) if out.status.success() && !out.stdout.trim_ascii().is_empty())
}

// --- The image, built once --------------------------------------------------------

struct Image {
    tag: String,
    /// `registry-v1-test=<run>`: on the image, containers and volumes.
    label: String,
    // Held so that the janitor's pipe closes only when this process ends.
    _janitor: Mutex<(Child, ChildStdin)>,
}

/// The image, `None` without a docker engine, or why it did not build (so
/// that a failed build fails every test once, not once each).
static IMAGE: OnceLock<Result<Option<Image>, String>> = OnceLock::new();

/// The image of this run, or `None` (said on stderr) without a docker
/// engine.
fn image(test: &str) -> Option<&'static Image> {
    let image = match IMAGE.get_or_init(build) {
        Ok(image) => image.as_ref(),
        Err(why) => panic!("{why}"),
    };
    if image.is_none() {
        let _ = writeln!(
            std::io::stderr(),
            "\nSKIPPED: docker engine not available (`docker info` fails): {test} did not run\n"
        );
    }
    image
}

fn build() -> Result<Option<Image>, String> {
    if !docker_engine_answers() {
        return Ok(None);
    }
    let run_id = rand_suffix();
    let tag = format!("registry-v1-test:{run_id}");
    let label = format!("registry-v1-test={run_id}");
    // Removes whatever this run made once its pipe closes, even when this
    // process is killed.
    let script = r#"read -r _ignored
docker ps -aq --filter "label=$1" | xargs -r docker rm -f -v >/dev/null 2>&1
docker volume ls -q --filter "label=$1" | xargs -r docker volume rm -f >/dev/null 2>&1
docker rmi -f "$2" >/dev/null 2>&1
exit 0"#;
    // Never waited for on purpose: the janitor must outlive this process.
    #[allow(clippy::zombie_processes)]
    let mut child = Command::new("sh")
        .args(["-c", script, "sh", &label, &tag])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the janitor");
    let stdin = child.stdin.take().expect("janitor's stdin");

    // The documented build: `cargo build --release`, then the image.
    // REGISTRY_V1_BINARY (read by the script) names a binary built already.
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/build.sh"))
        .args([&tag, "--label", &label])
        .env("CARGO", option_env!("CARGO").unwrap_or("cargo"))
        .stdin(Stdio::null())
        .output()
        .expect("run docker/build.sh");
    if !out.status.success() {
        return Err(format!(
            "docker/build.sh: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let _ = writeln!(
        std::io::stderr(),
        "container image {tag} built in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
    );
    Ok(Some(Image {
        tag,
        label,
        _janitor: Mutex::new((child, stdin)),
    }))
}

// --- Containers -------------------------------------------------------------------

/// A container of the image; removed (with its anonymous volumes) when
/// dropped.
struct Container {
    id: String,
}

impl Container {
    /// `docker run -d <args> IMAGE <command>`, with a health check every
    /// second so that the tests need not wait 30 s for it.
    fn run(image: &Image, args: &[&str], command: &[&str]) -> Container {
        let mut all = vec!["run", "-d", "--label", &image.label, "--health-interval=1s"];
        all.extend_from_slice(args);
        all.push(&image.tag);
        all.extend_from_slice(command);
        Container { id: docker(&all) }
    }

    fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "--format", format, &self.id])
    }

    fn logs(&self) -> String {
        let out = try_run("docker", &["logs", &self.id]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Waits until docker calls the container healthy (its HEALTHCHECK,
    /// `registry-v1 healthcheck`, passed).
    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = self.inspect("{{.State.Status}} {{.State.Health.Status}}");
            if state == "running healthy" {
                return;
            }
            assert!(
                state.starts_with("running") || state.starts_with("created"),
                "container {state}:\n{}",
                self.logs()
            );
            assert!(
                Instant::now() < deadline,
                "not healthy within 60 s ({state}):\n{}\n{}",
                self.inspect("{{json .State.Health}}"),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The host port published for the container's `port`.
    fn host_port(&self, port: u16) -> u16 {
        let out = docker(&["port", &self.id, &format!("{port}/tcp")]);
        out.lines()
            .find_map(|l| l.strip_prefix("127.0.0.1:"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no 127.0.0.1 port in `docker port`: {out}"))
    }

    fn registry(&self, port: u16) -> Client {
        Client::at(self.host_port(port))
    }

    /// `docker stop -t <timeout>`; the exit code.
    fn stop(&self, timeout: u32) -> i64 {
        docker(&["stop", "-t", &timeout.to_string(), &self.id]);
        self.inspect("{{.State.ExitCode}}").parse().unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = try_run("docker", &["rm", "-f", "-v", &self.id]);
    }
}

/// A named volume of this run; removed when dropped.
struct Volume(String);

impl Volume {
    fn new(image: &Image) -> Volume {
        let name = format!("registry-v1-test-{}", rand_suffix());
        docker(&["volume", "create", "--label", &image.label, &name]);
        Volume(name)
    }

    fn at(&self, path: &str) -> String {
        format!("{}:{path}", self.0)
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = try_run("docker", &["volume", "rm", "-f", &self.0]);
    }
}

/// A folder of the host for a bind mount, writable by the image's user as
/// an operator would make it (`chown 65532`).
fn host_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    if std::os::unix::fs::chown(dir.path(), Some(UID), Some(UID)).is_err() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    dir
}

// --- Clients ----------------------------------------------------------------------

const DOCKER_UA: &str = "docker/1.3.0 go/go1.3.3 kernel/3.16.0 os/linux arch/amd64";

/// A registry published on a host port: v1 requests as docker 1.x sends
/// them, v2 through skopeo.
struct Client {
    port: u16,
    http: reqwest::blocking::Client,
}

/// A v1 image: json and layer.
struct V1Image {
    id: String,
    json: Vec<u8>,
    layer: Vec<u8>,
}

impl V1Image {
    fn new(label: &str) -> V1Image {
        use rand::Rng;
        let id = hex::encode(rand::thread_rng().gen::<[u8; 32]>());
        let json = serde_json::to_vec(&json!({"id": id, "comment": label})).unwrap();
        V1Image {
            id,
            json,
            layer: gzip(&rootfs_tar(label)),
        }
    }

    fn checksum(&self) -> String {
        common::v1_checksum(&self.json, &self.layer)
    }
}

impl Client {
    fn at(port: u16) -> Client {
        Client {
            port,
            http: common::client(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.http.get(self.url(path)).send().unwrap()
    }

    fn put(&self, path: &str, body: impl Into<reqwest::blocking::Body>) -> (u16, String) {
        let resp = self
            .http
            .put(self.url(path))
            .header("User-Agent", DOCKER_UA)
            .body(body)
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    }

    fn put_checksum(&self, image: &V1Image) -> (u16, String) {
        let resp = self
            .http
            .put(self.url(&format!("/v1/images/{}/checksum", image.id)))
            .header("User-Agent", DOCKER_UA)
            .header("X-Docker-Checksum-Payload", image.checksum())
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    }

    /// `docker push` of a one-image repository, docker 1.x style.
    fn push_v1(&self, repo: &str, image: &V1Image) {
        let ok = (200, "true".to_owned());
        let list = format!(r#"[{{"id": "{}"}}]"#, image.id);
        assert_eq!(
            self.put(&format!("/v1/repositories/{repo}/"), list.clone())
                .0,
            200
        );
        let id = &image.id;
        assert_eq!(
            self.put(&format!("/v1/images/{id}/json"), image.json.clone()),
            ok
        );
        assert_eq!(
            self.put(&format!("/v1/images/{id}/layer"), image.layer.clone()),
            ok
        );
        assert_eq!(self.put_checksum(image), ok);
        let tag = format!("\"{id}\"");
        assert_eq!(
            self.put(&format!("/v1/repositories/{repo}/tags/latest"), tag),
            ok
        );
        assert_eq!(
            self.put(&format!("/v1/repositories/{repo}/images"), list).0,
            204
        );
    }

    /// `docker pull`, docker 1.x style: the tag, then the image's json and
    /// layer, which must be the pushed bytes.
    fn pull_v1(&self, repo: &str, image: &V1Image) {
        let tags: Value = self
            .get(&format!("/v1/repositories/{repo}/tags"))
            .json()
            .unwrap();
        assert_eq!(tags, json!({"latest": image.id}));
        let json = self.get(&format!("/v1/images/{}/json", image.id));
        assert_eq!(json.status(), 200);
        assert_eq!(json.bytes().unwrap(), image.json);
        let layer = self.get(&format!("/v1/images/{}/layer", image.id));
        assert_eq!(layer.status(), 200);
        assert!(layer.bytes().unwrap() == image.layer, "the layer pulled");
    }

    /// `skopeo copy` of an OCI layout to `name:latest`.
    fn push_v2(&self, layout: &OciLayout, name: &str) {
        run(
            "skopeo",
            &[
                "copy",
                "--dest-tls-verify=false",
                &format!("oci:{}:latest", layout.dir.path().display()),
                &format!("docker://{}/{name}:latest", self.host()),
            ],
        );
    }

    /// `skopeo copy` of `name:latest` into a fresh layout: the manifest and
    /// layer must be the pushed bytes.
    fn pull_v2(&self, layout: &OciLayout, name: &str) {
        let out = tempfile::tempdir().unwrap();
        run(
            "skopeo",
            &[
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{}/{name}:latest", self.host()),
                &format!("oci:{}:pulled", out.path().display()),
            ],
        );
        for blob in [&layout.manifest, &layout.layer] {
            let hex = sha256(blob);
            let path = out
                .path()
                .join("blobs/sha256")
                .join(&hex["sha256:".len()..]);
            assert!(
                std::fs::read(&path).ok().as_ref() == Some(blob),
                "{name}: blob {hex} pulled"
            );
        }
    }
}

/// A tar of a few small files, unique per call.
fn rootfs_tar(label: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let text = format!("{label} {}\n", rand_suffix());
    let mut head = tar::Header::new_gnu();
    head.set_size(text.len() as u64);
    head.set_mode(0o644);
    head.set_mtime(1_700_000_000);
    head.set_cksum();
    builder
        .append_data(&mut head, "hello.txt", text.as_bytes())
        .unwrap();
    builder.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// An OCI image layout of one image tagged `latest`, for skopeo.
struct OciLayout {
    dir: tempfile::TempDir,
    manifest: Vec<u8>,
    layer: Vec<u8>,
}

impl OciLayout {
    fn new(label: &str) -> OciLayout {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let tar = rootfs_tar(label);
        let layer = gzip(&tar);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(&tar)]},
        }))
        .unwrap();
        let manifest = manifest_bytes(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", &layer)],
        }));
        for blob in [&layer, &config, &manifest] {
            std::fs::write(blobs.join(&sha256(blob)["sha256:".len()..]), blob).unwrap();
        }
        let mut top = descriptor(OCI_MANIFEST, &manifest);
        top["annotations"] = json!({"org.opencontainers.image.ref.name": "latest"});
        std::fs::write(
            dir.path().join("index.json"),
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [top]})).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        OciLayout {
            dir,
            manifest,
            layer,
        }
    }
}

fn skopeo_available() -> bool {
    v2_support::tool_available("skopeo", ".ci/install-v2-clients.sh")
}

// --- The tests --------------------------------------------------------------------

/// `docker run -d -p 5000:5000 -v /opt/data/registry:/tmp/registry registry`
#[test]
fn local_storage_on_a_host_folder_kept_across_containers() {
    let Some(image) = image("local_storage_on_a_host_folder_kept_across_containers") else {
        return;
    };
    if !skopeo_available() {
        return;
    }
    let folder = host_folder();
    let mount = format!("{}:/tmp/registry", folder.path().display());
    let args = ["-p", "127.0.0.1::5000", "-v", &mount];
    let first = Container::run(image, &args, &[]);
    first.wait_healthy();
    let registry = first.registry(5000);
    let v1 = V1Image::new("local v1");
    let v2 = OciLayout::new("local v2");
    registry.push_v1("team/old", &v1);
    registry.push_v2(&v2, "team/new");
    registry.pull_v1("team/old", &v1);
    registry.pull_v2(&v2, "team/new");

    // Everything landed in the host folder, owned by the image's user; the
    // container's own filesystem got only the search index, at its
    // default path (/tmp/docker-registry.db).
    let layer = folder.path().join(format!("images/{}/layer", v1.id));
    assert_eq!(std::fs::read(&layer).unwrap(), v1.layer);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&layer).unwrap().uid(), UID);
    assert!(folder
        .path()
        .join("docker/registry/v2/blobs/sha256")
        .is_dir());
    let changed = docker(&["diff", &first.id]);
    for line in changed.lines() {
        let path = line.split_once(' ').map_or(line, |(_, p)| p);
        assert!(
            path == "/tmp" || path.starts_with("/tmp/docker-registry.db"),
            "written outside the volume: {line}\n{changed}"
        );
    }
    let search: Value = registry.get("/v1/search?q=old").json().unwrap();
    assert_eq!(search["num_results"], 1, "{search}");

    // A new container on the same folder serves the same images.
    drop(first);
    let second = Container::run(image, &args, &[]);
    second.wait_healthy();
    let registry = second.registry(5000);
    registry.pull_v1("team/old", &v1);
    registry.pull_v2(&v2, "team/new");
}

/// The host's address on docker's default bridge, which containers reach:
/// the network's gateway, or (when the engine does not name one) the
/// bridge interface's own address.
fn bridge_gateway() -> String {
    let named = docker(&[
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
    ]);
    if !named.is_empty() {
        return named;
    }
    let interface = docker(&[
        "network",
        "inspect",
        "bridge",
        "--format",
        r#"{{index .Options "com.docker.network.bridge.name"}}"#,
    ]);
    let interface = if interface.is_empty() || interface == "<no value>" {
        "docker0".to_owned()
    } else {
        interface
    };
    let addr = run("ip", &["-4", "-o", "addr", "show", "dev", &interface]);
    addr.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no IPv4 address on {interface}: {addr}"))
        .to_owned()
}

/// `docker run -d -p 5000:5000 -e SETTINGS_FLAVOR=s3 -e AWS_BUCKET=acme-docker
///     -e STORAGE_PATH=/registry -e AWS_KEY=... -e AWS_SECRET=...
///     -e SEARCH_BACKEND=sqlalchemy registry`,
/// against moto on the docker bridge's gateway (AWS_HOST, AWS_PORT,
/// AWS_SECURE=false added: the container's way to the test's S3).
#[test]
fn s3_flavor_with_search_against_moto() {
    let Some(image) = image("s3_flavor_with_search_against_moto") else {
        return;
    };
    if !skopeo_available() {
        return;
    }
    let gateway = bridge_gateway();
    let s3 = match s3_server::start_on(&gateway) {
        Ok(s3) => s3,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("this test needs moto's server under CI: {why} (run .ci/install-storage.sh)")
        }
        Err(why) => {
            let _ = writeln!(
                std::io::stderr(),
                "\nSKIPPED: s3_flavor_with_search_against_moto: {why}\n"
            );
            return;
        }
    };
    let bucket = format!("acme-docker-{}", rand_suffix());
    let http = common::client();
    let created = http
        .put(format!("{}/{bucket}", s3.endpoint()))
        .send()
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());

    let env = [
        "SETTINGS_FLAVOR=s3".to_owned(),
        format!("AWS_BUCKET={bucket}"),
        "STORAGE_PATH=/registry".to_owned(),
        "AWS_KEY=testing".to_owned(),
        "AWS_SECRET=testing".to_owned(),
        "SEARCH_BACKEND=sqlalchemy".to_owned(),
        format!("AWS_HOST={gateway}"),
        format!("AWS_PORT={}", s3.port),
        "AWS_SECURE=false".to_owned(),
    ];
    let mut args = vec!["-p", "127.0.0.1::5000"];
    for var in &env {
        args.extend(["-e", var.as_str()]);
    }
    let container = Container::run(image, &args, &[]);
    container.wait_healthy();
    let registry = container.registry(5000);
    let v1 = V1Image::new("s3 v1");
    let v2 = OciLayout::new("s3 v2");
    registry.push_v1("acme/web", &v1);
    registry.push_v2(&v2, "acme/api");
    registry.pull_v1("acme/web", &v1);
    registry.pull_v2(&v2, "acme/api");

    // In the bucket, under the prefix, both trees.
    let listing = http
        .get(format!(
            "{}/{bucket}?list-type=2&prefix=registry/",
            s3.endpoint()
        ))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let layer_key = format!("<Key>registry/images/{}/layer</Key>", v1.id);
    assert!(listing.contains(&layer_key), "{listing}");
    assert!(
        listing.contains("<Key>registry/docker/registry/v2/blobs/sha256/"),
        "{listing}"
    );
    // Search is on and found both pushes.
    let search: Value = registry.get("/v1/search?q=acme").json().unwrap();
    assert_eq!(search["num_results"], 2, "{search}");
}

/// `docker run -d -p 5000:5000 -v /home/user/registry-conf:/registry-conf
///     -e DOCKER_REGISTRY_CONFIG=/registry-conf/config.yml registry`,
/// with a flavor, an `_env:` variable and `REGISTRY_PORT` of its own.
#[test]
fn configuration_file_mounted_flavor_variables_and_port() {
    let Some(image) = image("configuration_file_mounted_flavor_variables_and_port") else {
        return;
    };
    let conf = tempfile::tempdir().unwrap();
    std::fs::write(
        conf.path().join("config.yml"),
        "common: &common\n\
         \x20   standalone: true\n\
         \x20   loglevel: info\n\
         mine:\n\
         \x20   <<: *common\n\
         \x20   storage: local\n\
         \x20   storage_path: _env:STORAGE_PATH:/tmp/registry/mine\n\
         \x20   issue: _env:GREETING:nobody set GREETING\n",
    )
    .unwrap();
    // Readable by the image's user, as a mounted file must be.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(conf.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mount = format!("{}:/registry-conf:ro", conf.path().display());
    let volume = Volume::new(image);
    let storage = volume.at("/tmp/registry");
    let container = Container::run(
        image,
        &[
            "-p",
            "127.0.0.1::5001",
            "-v",
            &mount,
            "-v",
            &storage,
            "-e",
            "DOCKER_REGISTRY_CONFIG=/registry-conf/config.yml",
            "-e",
            "SETTINGS_FLAVOR=mine",
            "-e",
            "GREETING=hello from a mounted file",
            "-e",
            "REGISTRY_PORT=5001",
        ],
        &[],
    );
    // The health check follows REGISTRY_PORT.
    container.wait_healthy();
    let registry = container.registry(5001);
    let root = registry.get("/").text().unwrap();
    assert_eq!(root, r#""hello from a mounted file""#);
    let v1 = V1Image::new("configured");
    registry.push_v1("conf/app", &v1);
    registry.pull_v1("conf/app", &v1);
    // No search in that flavor: nothing outside the volume (but the
    // folder docker made to mount the configuration on).
    assert_eq!(docker(&["diff", &container.id]), "A /registry-conf");

    // The other commands take the same environment: `config` shows a
    // flavor resolved, a bad value stops with a message naming it.
    let shown = docker(&[
        "run",
        "--rm",
        "--label",
        &image.label,
        "-e",
        "SETTINGS_FLAVOR=s3",
        "-e",
        "AWS_BUCKET=acme-docker",
        "-e",
        "AWS_SECRET=hidden-secret",
        &image.tag,
        "config",
        "--json",
    ]);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["storage"], "s3", "{shown}");
    assert_eq!(shown["s3_bucket"], "acme-docker", "{shown}");
    assert_eq!(shown["s3_secret_key"], "*****", "{shown}");
    let bad = try_run(
        "docker",
        &[
            "run",
            "--rm",
            "--label",
            &image.label,
            "-e",
            "DEBUG=1",
            &image.tag,
            "config",
            "--check",
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(
        message.contains("setting `debug` of flavor `dev`") && message.contains("DEBUG"),
        "{message}"
    );
}

/// A body that arrives as the test releases it.
struct Gated {
    chunks: mpsc::Receiver<Vec<u8>>,
    pending: Vec<u8>,
}

impl Read for Gated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            match self.chunks.recv() {
                Ok(chunk) => self.pending = chunk,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

/// Starts `PUT /v1/images/<id>/layer` with the first half of the layer; the
/// rest goes when the returned sender sends it (or never, if dropped).
/// The upload's status and body, or why it failed.
type Upload = std::thread::JoinHandle<Result<(u16, String), String>>;

fn start_layer_upload(registry: &Client, image: &V1Image) -> (mpsc::Sender<Vec<u8>>, Upload) {
    let (tx, rx) = mpsc::channel();
    let half = image.layer.len() / 2;
    tx.send(image.layer[..half].to_vec()).unwrap();
    let url = registry.url(&format!("/v1/images/{}/layer", image.id));
    let upload = std::thread::spawn(move || {
        let body = reqwest::blocking::Body::new(Gated {
            chunks: rx,
            pending: Vec::new(),
        });
        let resp = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
            .put(url)
            .header("User-Agent", DOCKER_UA)
            .body(body)
            .send()
            .map_err(|e| format!("{e:#}"))?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().unwrap_or_default()))
    });
    (tx, upload)
}

/// Waits until the container logs that SIGTERM came.
fn wait_for_sigterm(container: &Container) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !container.logs().contains("SIGTERM received") {
        assert!(
            Instant::now() < deadline,
            "no SIGTERM logged:\n{}",
            container.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn docker_stop_finishes_the_upload_in_flight() {
    let Some(image) = image("docker_stop_finishes_the_upload_in_flight") else {
        return;
    };
    let volume = Volume::new(image);
    let storage = volume.at("/tmp/registry");
    let args = ["-p", "127.0.0.1::5000", "-v", &storage];
    let container = Container::run(image, &args, &[]);
    container.wait_healthy();
    let registry = container.registry(5000);
    let done = V1Image::new("finished during stop");
    let ok = (200, "true".to_owned());
    let json_path = format!("/v1/images/{}/json", done.id);
    assert_eq!(registry.put(&json_path, done.json.clone()), ok);
    let (rest, upload) = start_layer_upload(&registry, &done);

    // docker stop sends SIGTERM; the upload goes on, finishes, and only
    // then does the registry exit, by itself (status 0, not killed).
    let id = container.id.clone();
    let stop = std::thread::spawn(move || {
        docker(&["stop", "-t", "30", &id]);
    });
    wait_for_sigterm(&container);
    let half = done.layer.len() / 2;
    rest.send(done.layer[half..].to_vec()).unwrap();
    drop(rest);
    assert_eq!(upload.join().unwrap(), Ok(ok.clone()));
    stop.join().unwrap();
    assert_eq!(container.inspect("{{.State.ExitCode}}"), "0");
    drop(container);

    // The next container on the volume has the layer whole.
    let container = Container::run(image, &args, &[]);
    container.wait_healthy();
    let registry = container.registry(5000);
    assert_eq!(registry.put_checksum(&done), ok);
    let layer = registry.get(&format!("/v1/images/{}/layer", done.id));
    assert_eq!(layer.status(), 200);
    assert!(layer.bytes().unwrap() == done.layer);

    // An upload that does not finish within docker's timeout is killed
    // with the registry: its image is never served, half or whole.
    let cut = V1Image::new("cut by stop");
    let json_path = format!("/v1/images/{}/json", cut.id);
    assert_eq!(registry.put(&json_path, cut.json.clone()), ok);
    let (stalled, upload) = start_layer_upload(&registry, &cut);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(container.stop(2), 137, "killed by docker after 2 s");
    drop(stalled);
    assert!(upload.join().unwrap().is_err(), "the cut upload failed");
    drop(container);
    let container = Container::run(image, &args, &[]);
    container.wait_healthy();
    let registry = container.registry(5000);
    let layer = registry.get(&format!("/v1/images/{}/layer", cut.id));
    assert_eq!(layer.status(), 400);
    let body: Value = layer.json().unwrap();
    assert_eq!(body["error"], "Image is being uploaded, retry later");
}

#[test]
fn runs_as_its_user_on_a_read_only_root_filesystem() {
    let Some(image) = image("runs_as_its_user_on_a_read_only_root_filesystem") else {
        return;
    };
    if !skopeo_available() {
        return;
    }
    let config: Value = serde_json::from_str(&docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        &image.tag,
    ]))
    .unwrap();
    assert_eq!(config["User"], format!("{UID}:{UID}"));
    assert_eq!(config["Volumes"], json!({"/tmp/registry": {}}));
    assert_eq!(config["ExposedPorts"], json!({"5000/tcp": {}}));
    assert_eq!(
        config["Healthcheck"]["Test"],
        json!(["CMD", "/usr/local/bin/registry-v1", "healthcheck"])
    );

    // Read-only, with only the volume writable: the search index goes in
    // the volume too.
    let volume = Volume::new(image);
    let storage = volume.at("/tmp/registry");
    let container = Container::run(
        image,
        &[
            "--read-only",
            "-p",
            "127.0.0.1::5000",
            "-v",
            &storage,
            "-e",
            "SQLALCHEMY_INDEX_DATABASE=sqlite:////tmp/registry/docker-registry.db",
        ],
        &[],
    );
    container.wait_healthy();
    let registry = container.registry(5000);
    let v1 = V1Image::new("read-only v1");
    let v2 = OciLayout::new("read-only v2");
    registry.push_v1("ro/old", &v1);
    registry.push_v2(&v2, "ro/new");
    registry.pull_v1("ro/old", &v1);
    registry.pull_v2(&v2, "ro/new");
    let processes = docker(&["top", &container.id, "-o", "pid,uid"]);
    let uids: Vec<&str> = processes
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(uids, vec![UID.to_string()], "{processes}");

    // The user cannot write the image's own folders: storage elsewhere
    // stops the registry at startup, with the reason.
    let elsewhere = try_run(
        "docker",
        &[
            "run",
            "--rm",
            "--label",
            &image.label,
            "-e",
            "STORAGE_PATH=/var/lib/registry",
            &image.tag,
        ],
    );
    assert_eq!(elsewhere.status.code(), Some(1));
    let message = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(message.contains("/var/lib/registry"), "{message}");
    assert!(
        message.to_lowercase().contains("permission denied"),
        "{message}"
    );
}
