//! What an operator graphs: the process's Prometheus metrics, in one
//! registry for the whole process.
//!
//! Labels never hold what a request names (repositories, digests, users):
//! routes are their patterns, so the number of series stays bounded
//! whatever clients send, and nothing a client typed reaches a scrape.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// The metrics the registry keeps.
pub struct Metrics {
    registry: Registry,
    /// `api`, `route`, `method`, `status`.
    pub requests: IntCounterVec,
    /// Seconds to the response's headers: `api`, `route`, `method`.
    pub latency: HistogramVec,
    /// Request body bytes read: `api`.
    pub bytes_in: IntCounterVec,
    /// Response body bytes sent: `api`.
    pub bytes_out: IntCounterVec,
    /// Uploads being served (those `max_concurrent_uploads` counts).
    pub uploads: IntGauge,
    /// Storage and search failures that reached a response: `backend`, `kind`.
    pub failures: IntCounterVec,
    /// Lookups of the Redis cache: `result` (`hit`, `miss`, `tombstone`,
    /// `unavailable`).
    pub cache: IntCounterVec,
    /// Collections run inside `serve` (`gc_interval`): `result` (`done`,
    /// `busy`: another collector held the store, `failed`).
    pub gc_runs: IntCounterVec,
    /// What collections deleted: `kind` (`manifests`, `blobs`,
    /// `v1_images`, `uploads`).
    pub gc_deleted: IntCounterVec,
    /// Bytes the collections freed.
    pub gc_freed_bytes: IntCounter,
    /// Seconds the last finished collection took.
    pub gc_last_duration: Gauge,
    /// Unix time of the last finished collection (0: none yet), so an alert
    /// can fire when collections stop.
    pub gc_last_success: Gauge,
    /// Answers of the pull-through cache: `upstream` (its configured
    /// name), `kind` (`manifest`, `blob`), `result` (`hit`, `miss`,
    /// `revalidated`, `stale`).
    pub mirror_requests: IntCounterVec,
    /// Bytes of blobs fetched from upstreams: `upstream`.
    pub mirror_fetched_bytes: IntCounterVec,
    /// Upstream requests that failed: `upstream`, `kind`.
    pub mirror_errors: IntCounterVec,
    /// Webhook events by `endpoint` (its configured name) and `result`
    /// (`queued`, `delivered`, `dropped`).
    pub notification_events: IntCounterVec,
    /// Deliveries to an endpoint that failed (each retry counts): `endpoint`.
    pub notification_failures: IntCounterVec,
    /// Seconds from an event to its delivery: `endpoint`.
    pub notification_latency: HistogramVec,
    /// Events waiting for an endpoint, as its deliverer last listed them:
    /// `endpoint`.
    pub notification_pending: IntGaugeVec,
    /// What the operator's rules did: `rule` (`immutable_tags`,
    /// `retention`, `quota`), `action` (`refused_push`, `refused_delete`,
    /// `removed_tag`, `removed_manifest`, `refused_upload`).
    pub rule_actions: IntCounterVec,
    /// What the repositories of a quota rule hold, as this process last
    /// counted or read it: `quota` (the rule's `repositories`).
    pub quota_used: IntGaugeVec,
    /// The bound of each quota rule: `quota`.
    pub quota_limit: IntGaugeVec,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("registry_http_requests_total", "Requests answered"),
            &["api", "route", "method", "status"],
        )
        .expect("valid metric");
        // From 0.5 ms (a cached manifest) to a minute (a layer written to S3).
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "registry_http_request_duration_seconds",
                "Seconds from the request to its response's headers",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ]),
            &["api", "route", "method"],
        )
        .expect("valid metric");
        let bytes_in = IntCounterVec::new(
            Opts::new(
                "registry_http_request_body_bytes_total",
                "Request body bytes read",
            ),
            &["api"],
        )
        .expect("valid metric");
        let bytes_out = IntCounterVec::new(
            Opts::new(
                "registry_http_response_body_bytes_total",
                "Response body bytes sent",
            ),
            &["api"],
        )
        .expect("valid metric");
        let uploads = IntGauge::new("registry_uploads_in_progress", "Uploads being served")
            .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "registry_backend_failures_total",
                "Storage and search failures that reached a response",
            ),
            &["backend", "kind"],
        )
        .expect("valid metric");
        let cache = IntCounterVec::new(
            Opts::new(
                "registry_cache_lookups_total",
                "Lookups of the Redis cache of small files, by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let gc_runs = IntCounterVec::new(
            Opts::new(
                "registry_gc_runs_total",
                "Garbage collections started by gc_interval, by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let gc_deleted = IntCounterVec::new(
            Opts::new(
                "registry_gc_deleted_total",
                "What garbage collections deleted, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let gc_freed_bytes = IntCounter::new(
            "registry_gc_freed_bytes_total",
            "Bytes garbage collections freed",
        )
        .expect("valid metric");
        let gc_last_duration = Gauge::new(
            "registry_gc_last_duration_seconds",
            "Seconds the last finished garbage collection took",
        )
        .expect("valid metric");
        let gc_last_success = Gauge::new(
            "registry_gc_last_success_timestamp_seconds",
            "Unix time the last garbage collection finished",
        )
        .expect("valid metric");
        let mirror_requests = IntCounterVec::new(
            Opts::new(
                "registry_mirror_requests_total",
                "Answers of the pull-through cache, by upstream, kind and result",
            ),
            &["upstream", "kind", "result"],
        )
        .expect("valid metric");
        let mirror_fetched_bytes = IntCounterVec::new(
            Opts::new(
                "registry_mirror_fetched_bytes_total",
                "Blob bytes the pull-through cache fetched from each upstream",
            ),
            &["upstream"],
        )
        .expect("valid metric");
        let mirror_errors = IntCounterVec::new(
            Opts::new(
                "registry_mirror_upstream_errors_total",
                "Requests to an upstream that failed, by upstream and kind",
            ),
            &["upstream", "kind"],
        )
        .expect("valid metric");
        let notification_events = IntCounterVec::new(
            Opts::new(
                "registry_notification_events_total",
                "Webhook events queued, delivered and dropped, by endpoint",
            ),
            &["endpoint", "result"],
        )
        .expect("valid metric");
        let notification_failures = IntCounterVec::new(
            Opts::new(
                "registry_notification_failures_total",
                "Deliveries to a webhook endpoint that failed, retries included",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let rule_actions = IntCounterVec::new(
            Opts::new(
                "registry_rule_actions_total",
                "What the operator's rules did, by rule and action",
            ),
            &["rule", "action"],
        )
        .expect("valid metric");
        // From a delivery at once (a few ms) to one after an outage (hours).
        let notification_latency = HistogramVec::new(
            HistogramOpts::new(
                "registry_notification_delivery_seconds",
                "Seconds from an event to its delivery, by endpoint",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                3600.0,
            ]),
            &["endpoint"],
        )
        .expect("valid metric");
        let notification_pending = IntGaugeVec::new(
            Opts::new(
                "registry_notification_pending_events",
                "Webhook events waiting for their endpoint",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let quota_used = IntGaugeVec::new(
            Opts::new(
                "registry_quota_used_bytes",
                "Bytes the repositories of a quota rule hold between them",
            ),
            &["quota"],
        )
        .expect("valid metric");
        let quota_limit = IntGaugeVec::new(
            Opts::new("registry_quota_limit_bytes", "The bound of a quota rule"),
            &["quota"],
        )
        .expect("valid metric");
        for metric in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(quota_used.clone()),
            Box::new(quota_limit.clone()),
            Box::new(notification_events.clone()),
            Box::new(notification_failures.clone()),
            Box::new(notification_latency.clone()),
            Box::new(notification_pending.clone()),
            Box::new(rule_actions.clone()),
            Box::new(mirror_requests.clone()),
            Box::new(mirror_fetched_bytes.clone()),
            Box::new(mirror_errors.clone()),
            Box::new(latency.clone()),
            Box::new(bytes_in.clone()),
            Box::new(bytes_out.clone()),
            Box::new(uploads.clone()),
            Box::new(failures.clone()),
            Box::new(cache.clone()),
            Box::new(gc_runs.clone()),
            Box::new(gc_deleted.clone()),
            Box::new(gc_freed_bytes.clone()),
            Box::new(gc_last_duration.clone()),
            Box::new(gc_last_success.clone()),
        ] {
            registry.register(metric).expect("registered once");
        }
        // CPU, memory, file descriptors, start time, named `process_*` as
        // every Prometheus exporter names them.
        #[cfg(target_os = "linux")]
        {
            let collector = prometheus::process_collector::ProcessCollector::for_self();
            registry
                .register(Box::new(collector))
                .expect("registered once");
        }
        Self {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            uploads,
            failures,
            cache,
            gc_runs,
            gc_deleted,
            gc_freed_bytes,
            gc_last_duration,
            gc_last_success,
            mirror_requests,
            mirror_fetched_bytes,
            mirror_errors,
            notification_events,
            notification_failures,
            notification_latency,
            notification_pending,
            rule_actions,
            quota_used,
            quota_limit,
        }
    }

    /// The text format of every metric, as a scrape gets it.
    pub fn render(&self) -> String {
        let mut text = Vec::new();
        let families = self.registry.gather();
        // Encoding into a Vec cannot fail but on a broken metric.
        if let Err(e) = TextEncoder::new().encode(&families, &mut text) {
            log::error!("metrics not encoded: {e}");
        }
        String::from_utf8(text).unwrap_or_default()
    }

    /// A storage or search failure that reached a response.
    pub fn failure(&self, backend: &str, kind: &str) {
        self.failures.with_label_values(&[backend, kind]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_process_figures_are_rendered() {
        let metrics = get();
        metrics
            .requests
            .with_label_values(&["v2", "/v2/", "GET", "200"])
            .inc();
        metrics.failure("storage", "unavailable");
        let text = metrics.render();
        assert!(
            text.contains(
                "registry_http_requests_total{api=\"v2\",method=\"GET\",route=\"/v2/\",status=\"200\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "registry_backend_failures_total{backend=\"storage\",kind=\"unavailable\"}"
            ),
            "{text}"
        );
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}
