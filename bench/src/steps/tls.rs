//! Section 12: what https costs. Two registry processes on one storage
//! folder, one on plain http (the baseline) and one with `tls_*` set, the
//! same layer pushed and pulled through each by the same client, runs
//! taking turns. The certificate is a self-signed P-256 one made by
//! openssl for the run (ECDSA, as most certificates issued today).

use std::path::Path;

use anyhow::{ensure, Context, Result};

use super::layers::throughput_and_cpu;
use super::{figure, rotate, timed_command, Ctx, LoadWatch, MIB};
use crate::data;
use crate::http;
use crate::procs::{self, Server};
use crate::report::{Row, Section, Unit};

const REPO: &str = "bench/tls";

pub fn run(ctx: &Ctx, section: &mut Section) {
    let setup = match Setup::new(ctx) {
        Ok(setup) => setup,
        Err(e) => {
            section.rows.push(Row::Failed {
                step: "https set-up".into(),
                error: format!("{e:#}"),
            });
            return;
        }
    };
    let size = setup.layer.size;
    section.step(
        &format!("pull {} MiB over https and http", size / MIB),
        || setup.pulls(ctx),
    );
    section.step(
        &format!("push {} MiB over https and http", size / MIB),
        || setup.pushes(ctx),
    );
}

struct Setup {
    plain: Server,
    tls: Server,
    client: reqwest::Client,
    layer: data::Layer,
    digest: String,
    storage: std::path::PathBuf,
}

impl Setup {
    fn new(ctx: &Ctx) -> Result<Setup> {
        let work = ctx.work.join("tls");
        let storage = work.join("storage");
        std::fs::create_dir_all(&storage)?;
        let (cert, key) = (work.join("server.crt"), work.join("server.key"));
        self_signed(&cert, &key)?;
        let layer = data::write_layer(&work.join("layer.bin"), ctx.plan.layer, 10)?;
        let env = |tls: bool| {
            let mut env = vec![
                ("SETTINGS_FLAVOR", "dev".to_owned()),
                ("STORAGE_PATH", storage.display().to_string()),
                ("SEARCH_BACKEND", String::new()),
            ];
            if tls {
                env.push(("TLS_CERTIFICATE", cert.display().to_string()));
                env.push(("TLS_KEY", key.display().to_string()));
            }
            env
        };
        let plain = procs::registry(&ctx.registry_bin, &env(false), &work)?;
        let tls = procs::registry(&ctx.registry_bin, &env(true), &work)?;
        let pem = std::fs::read(&cert)?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(600))
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
            .build()?;
        let digest = format!("sha256:{}", layer.sha256);
        let setup = Setup {
            plain,
            tls,
            client,
            layer,
            digest,
            storage,
        };
        // The layer, pushed once for the pulls.
        ctx.block_on(setup.push(&setup.url(false, "")))?;
        // Both answer, over what they speak; the https one refuses http.
        for tls in [false, true] {
            let url = setup.url(tls, "/v2/");
            let status = ctx
                .block_on(async { setup.client.get(&url).send().await })?
                .status();
            ensure!(status == 200, "GET {url}: {status}");
        }
        ensure!(
            ctx.block_on(async { setup.client.get(setup.tls.url("/v2/")).send().await })
                .is_err(),
            "the https registry answered plain http"
        );
        Ok(setup)
    }

    fn url(&self, tls: bool, path: &str) -> String {
        if tls {
            format!("https://127.0.0.1:{}{path}", self.tls.port)
        } else {
            self.plain.url(path)
        }
    }

    fn server(&self, tls: bool) -> &Server {
        if tls {
            &self.tls
        } else {
            &self.plain
        }
    }

    async fn push(&self, base: &str) -> Result<()> {
        let file = tokio::fs::File::open(&self.layer.path).await?;
        let body =
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
        http::v2_push_blob(
            &self.client,
            base,
            REPO,
            &self.digest,
            body,
            self.layer.size,
        )
        .await
    }

    fn pulls(&self, ctx: &Ctx) -> Result<Vec<Row>> {
        let path = format!("/v2/{REPO}/blobs/{}", self.digest);
        if ctx.plan.verify {
            for tls in [false, true] {
                let url = self.url(tls, &path);
                ctx.block_on(http::download(
                    &self.client,
                    &url,
                    None,
                    self.layer.size,
                    Some(&self.layer.sha256),
                ))?;
            }
        }
        let mut rows = Vec::new();
        for clients in [1, ctx.plan.clients] {
            let size = self.layer.size;
            let load = LoadWatch::start();
            let measure = |tls: bool| {
                let url = self.url(tls, &path);
                throughput_and_cpu(self.server(tls), size * clients as u64, || {
                    ctx.block_on(http::parallel_download(
                        &self.client,
                        &url,
                        clients,
                        None,
                        size,
                    ))
                })
            };
            let mut over_http = || measure(false);
            let mut over_https = || measure(true);
            let got = rotate(ctx.plan.reps, &mut [&mut over_http, &mut over_https])?;
            rows.extend(pair_rows(
                &format!(
                    "pull, {clients} client{}",
                    if clients == 1 { "" } else { "s" }
                ),
                &got,
                load.end(),
            ));
        }
        Ok(rows)
    }

    fn pushes(&self, ctx: &Ctx) -> Result<Vec<Row>> {
        let load = LoadWatch::start();
        let measure = |tls: bool| {
            // A blob already stored is not written again: each push
            // starts from a tree without it.
            self.forget_blob()?;
            let base = self.url(tls, "");
            throughput_and_cpu(self.server(tls), self.layer.size, || {
                let start = std::time::Instant::now();
                ctx.block_on(self.push(&base))?;
                Ok(start.elapsed())
            })
        };
        let mut over_http = || measure(false);
        let mut over_https = || measure(true);
        let got = rotate(ctx.plan.reps, &mut [&mut over_http, &mut over_https])?;
        Ok(pair_rows("push (one POST)", &got, load.end()))
    }

    fn forget_blob(&self) -> Result<()> {
        let hex = &self.layer.sha256;
        let dir = self
            .storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("remove {}", dir.display()))
            }
            _ => Ok(()),
        }
    }
}

/// Throughput and server CPU over https, next to plain http.
fn pair_rows(name: &str, got: &[Vec<(f64, f64)>], load: (f64, f64)) -> Vec<Row> {
    let speed = |v: &[(f64, f64)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
    let cpu = |v: &[(f64, f64)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
    vec![
        figure(
            format!("{name} over https"),
            Unit::MegabytesPerSecond,
            &speed(&got[1]),
            Some(("plain http, same binary", &speed(&got[0]))),
            None,
            load,
        ),
        figure(
            format!("{name} over https: server CPU"),
            Unit::CpuMsPerGb,
            &cpu(&got[1]),
            Some(("plain http, same binary", &cpu(&got[0]))),
            None,
            load,
        ),
    ]
}

/// A self-signed certificate for 127.0.0.1, valid for two days.
fn self_signed(cert: &Path, key: &Path) -> Result<()> {
    timed_command(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            // A server's certificate, not a CA's (openssl's default for
            // -x509), or rustls refuses it.
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            &key.display().to_string(),
            "-out",
            &cert.display().to_string(),
        ],
    )
    .context("openssl req: a certificate for the run")?;
    let pem = std::fs::read(cert)?;
    ensure!(
        pem.starts_with(b"-----BEGIN CERTIFICATE-----"),
        "openssl wrote no certificate"
    );
    Ok(())
}
