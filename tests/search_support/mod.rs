//! What the search tests share: a real PostgreSQL server.

pub mod postgres;
