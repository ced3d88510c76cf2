//! The shared storage driver suite, run against every driver: local on a
//! temporary folder, memory, S3 and GCS against a real S3-compatible server on
//! loopback (see `storage_support::s3_server`).

mod storage_support;

use registry_v1::config::StorageKind;
use storage_support::fixture::Fixture;
use storage_support::suite;

/// One test per suite function for a driver; `$make` gives a fresh
/// fixture, or `None` when the driver's server is unavailable (skipped,
/// never under CI).
macro_rules! driver_suite {
    ($driver:ident, $make:expr) => {
        mod $driver {
            use super::*;
            driver_suite!(@tests $make;
                small_round_trip,
                whole_files_of_any_size,
                large_round_trip,
                ranges_at_the_edges,
                listing_nested_folders,
                listing_many_entries,
                recursive_remove,
                not_found_for_each_method,
                overwrites,
                concurrent_writers,
                special_names_through_layout,
                invalid_paths_are_refused,
                interrupted_upload_keeps_old_content,
                abandoned_upload_leaves_nothing,
                redirect_urls,
                writer_resumes_across_writers,
                resume_drops_bytes_after_the_last_close,
                resume_on_another_instance,
                resume_before_the_last_close,
                writer_errors,
                cancel_leaves_nothing,
                commit_makes_a_plain_file,
                rename_replaces_atomically,
                stat_gives_size_and_time
            );
        }
    };
    (@tests $make:expr; $($test:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let Some(fixture): Option<Fixture> = $make.await else {
                    return;
                };
                suite::$test(&fixture).await;
            }
        )*
    };
}

driver_suite!(local, async { Some(Fixture::local().await) });
driver_suite!(memory, async { Some(Fixture::memory().await) });
driver_suite!(s3, Fixture::bucket(StorageKind::S3, "/registry", true));
driver_suite!(
    gcs,
    Fixture::bucket(StorageKind::Gcs, "/registry/gcs", false)
);
