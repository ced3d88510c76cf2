//! What the sections that compare a registry's pushes under a setting
//! with the same pushes without it share (15, notifications; 16, quotas):
//! registry-v1 processes of one flavor file each on a folder of its own,
//! a set of small images and one large, and the push rates.

use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use super::{sync_disks, Ctx, MIB};
use crate::data::{self, Image};
use crate::http;
use crate::procs::{self, Server};

/// A flavor of local storage at `_env:STORAGE_PATH`, plus `extra` (YAML
/// lines indented under the flavor).
pub fn flavor(name: &str, extra: &str) -> String {
    format!(
        "{name}:\n  storage: local\n  storage_path: _env:STORAGE_PATH\n  standalone: true\n{extra}"
    )
}

/// registry-v1 started with flavor `flavor` of `config`, its storage in
/// `work/<flavor>`.
pub fn start(ctx: &Ctx, work: &Path, config: &Path, flavor: &str) -> Result<Server> {
    let storage = work.join(flavor);
    fs::create_dir_all(&storage)?;
    let env = [
        ("DOCKER_REGISTRY_CONFIG", config.display().to_string()),
        ("SETTINGS_FLAVOR", flavor.to_owned()),
        ("STORAGE_PATH", storage.display().to_string()),
        ("SEARCH_BACKEND", String::new()),
    ];
    procs::registry(&ctx.registry_bin, &env, work)
}

/// The images pushed: `count` small ones, each a layer of `small` bytes,
/// and one with a layer of `large`, their bytes from seeds after `seed`.
pub struct Images {
    pub small: Vec<Image>,
    pub large: Image,
    pub small_size: u64,
    pub large_size: u64,
}

impl Images {
    /// 40 images of 256 KiB and one of 64 MiB; 4 of 64 KiB and one of
    /// 2 MiB in a smoke run.
    pub fn write(ctx: &Ctx, work: &Path, seed: u64) -> Result<Images> {
        let (count, small_size, large_size) = if ctx.plan.smoke {
            (4, 64 * 1024, 2 * MIB)
        } else {
            (40, 256 * 1024, 64 * MIB)
        };
        let small = (0..count)
            .map(|i| {
                let path = work.join(format!("small-{i}.bin"));
                let layer = data::write_layer(&path, small_size, seed + 1 + i)?;
                data::image(&data::image_id(ctx.run_id, seed + 1 + i), None, &layer)
            })
            .collect::<Result<Vec<Image>>>()?;
        let layer = data::write_layer(&work.join("large.bin"), large_size, seed)?;
        let large = data::image(&data::image_id(ctx.run_id, seed), None, &layer)?;
        Ok(Images {
            small,
            large,
            small_size,
            large_size,
        })
    }

    /// Images a second: the small images, each two blobs and a manifest,
    /// pushed by `clients` clients at once, each its share, client `c`
    /// into repository `repo(c)` as tags `s<i>`.
    pub fn small_rate(
        &self,
        ctx: &Ctx,
        server: &Server,
        clients: usize,
        repo: impl Fn(usize) -> String,
    ) -> Result<f64> {
        sync_disks();
        let base = server.url("");
        let started = Instant::now();
        ctx.block_on(async {
            let pushers = (0..clients).map(|c| {
                let base = base.clone();
                let repo = repo(c);
                async move {
                    for (i, image) in self.small.iter().enumerate().skip(c).step_by(clients) {
                        let one = std::slice::from_ref(image);
                        http::v2_push_image(&ctx.client, &base, &repo, &format!("s{i}"), one)
                            .await?;
                    }
                    anyhow::Ok(())
                }
            });
            futures_util::future::try_join_all(pushers).await
        })?;
        Ok(self.small.len() as f64 / started.elapsed().as_secs_f64())
    }

    /// MB/s: the large image pushed into `repo` as `large`.
    pub fn large_rate(&self, ctx: &Ctx, server: &Server, repo: &str) -> Result<f64> {
        sync_disks();
        let base = server.url("");
        let started = Instant::now();
        ctx.block_on(http::v2_push_image(
            &ctx.client,
            &base,
            repo,
            "large",
            std::slice::from_ref(&self.large),
        ))?;
        Ok(self.large_size as f64 / 1e6 / started.elapsed().as_secs_f64())
    }
}
