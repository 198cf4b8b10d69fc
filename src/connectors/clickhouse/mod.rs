//! The ClickHouse sink (`'connector' = 'clickhouse'`): options in [`config`], Arrow ⇄
//! ClickHouse types in [`types`], inserts with deduplication tokens and retries in [`sink`].

pub mod config;
pub mod sink;
pub mod types;

pub use config::OPTIONS;

pub use config::ClickHouseConfig;
pub use sink::ClickHouseSink;
