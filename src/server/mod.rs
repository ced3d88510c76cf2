//! Assembly, the top layer: the shared state, the middleware, the routes
//! of each API, the listeners (plain http or https, and the metrics'), the
//! mail of server errors.

mod mail;
pub mod memory;
mod metrics;
mod middleware;
mod tls;

use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::config::{Environment, Settings};
use crate::registry::AppState;

/// Serves until a signal: SIGTERM (`docker stop`, systemd) lets requests in
/// flight finish first, for actix's 30 s at most; SIGINT and SIGQUIT stop at
/// once, as gunicorn did for the old registry.
pub async fn run(settings: Settings, env: &Environment) -> anyhow::Result<()> {
    // Before the storage and the index are opened (which may take long):
    // broken certificate files stop the start at once.
    let tls = match &settings.tls {
        Some(settings) => Some(std::sync::Arc::new(tls::Tls::load(settings)?)),
        None => None,
    };
    let state = AppState::open(settings).await?;
    let workers = env
        .gunicorn_workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let addr = (env.registry_host.as_str(), env.registry_port);
    log::info!(
        "registry-v1 {} on {}:{} (flavor {}, storage {} at {}, {} workers)",
        env!("CARGO_PKG_VERSION"),
        addr.0,
        addr.1,
        state.settings.flavor,
        state.settings.storage.kind,
        state.settings.storage.path,
        workers
    );
    state.notifications.start(env.registry_port);
    let notifications = state.notifications.clone();
    if let Some(interval) = state.settings.gc.interval {
        let options = crate::registry::collector::Options::from_settings(&state.settings);
        let storage = state.storage.clone();
        actix_web::rt::spawn(crate::registry::collector::periodic(
            storage,
            state.events.clone(),
            options,
            interval,
        ));
    }
    // Push records pile up when no collection runs; removed after pushes.
    actix_web::rt::spawn(crate::registry::collector::records::keep_pruned(
        state.storage.clone(),
        state.settings.gc.grace_period,
    ));
    let quotas: Vec<_> = state.rules.quotas().cloned().collect();
    if !quotas.is_empty() && state.settings.metrics.is_some() {
        actix_web::rt::spawn(crate::registry::rules::quota::keep_shown(
            state.storage.clone(),
            quotas,
            std::time::Duration::from_secs(15),
        ));
    }
    if let Some(settings) = &state.settings.metrics {
        log::info!("metrics on http://{}{}", settings.address, settings.path);
        actix_web::rt::spawn(metrics::server(settings)?);
    }
    let mailer = match &state.settings.email {
        Some(email) => Some(
            mail::Mailer::start(email, &state.settings.flavor)
                .context("cannot set up the mailing of server errors (email_exceptions)")?,
        ),
        None => None,
    };
    memory::start_trimming().context("cannot start the malloc trim thread")?;
    let uploads = middleware::Uploads::default();
    let page_tokens = web::Data::new(
        crate::ui::PageTokens::new(state.settings.login.max_failed_logins)
            .context("cannot build the web pages' HTTP client")?,
    );
    let server = HttpServer::new(move || {
        let settings = state.settings.clone();
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(uploads.clone())
            .app_data(mailer.clone())
            .wrap(actix_web::middleware::from_fn(middleware::body_limits))
            .wrap(middleware::debug_header(&settings))
            .wrap(middleware::cors(&settings.cors))
            .wrap(middleware::access_log())
            .wrap(actix_web::middleware::Condition::new(
                settings.email.is_some(),
                actix_web::middleware::from_fn(mail::report_server_errors),
            ))
            // Nothing is measured where nothing scrapes.
            .wrap(actix_web::middleware::Condition::new(
                settings.metrics.is_some(),
                actix_web::middleware::from_fn(metrics::measure),
            ))
            .configure(crate::http::health::routes)
            // Before v1, which answers every other `GET /`.
            .configure(|cfg| crate::ui::routes(cfg, &settings, &page_tokens))
            .configure(|cfg| crate::v1::routes(cfg, &settings))
            .configure(|cfg| crate::v2::routes(cfg, &settings))
            .default_service(web::to(middleware::not_found))
    })
    .workers(workers)
    // A streamed body leaves in a write of its own after the head; with
    // Nagle's algorithm that write waited for the client's delayed ACK, and
    // every small blob on a kept-alive connection took 40 ms.
    .tcp_nodelay(true);
    let server = match &tls {
        Some(tls) => {
            tls.clone().reload_on_sighup()?;
            server.bind_rustls_0_23(addr, tls.server_config()?)
        }
        None => server.bind(addr),
    }
    .with_context(|| format!("cannot listen on {}:{}", addr.0, addr.1))?;
    let served = server.run().await.context("server failed");
    notifications.stop().await;
    served
}
