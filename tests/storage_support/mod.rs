//! Support for the storage driver tests and benchmark: generated bodies,
//! a local S3-compatible server, fixtures per driver, the shared suite.
#![allow(dead_code)]

pub mod fixture;
pub mod pattern;
pub mod redis_server;
pub mod s3_server;
pub mod suite;
pub mod swift_server;
