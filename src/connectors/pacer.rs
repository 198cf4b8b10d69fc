//! Pacing for the generators (`datagen`, `fleet-sim`, `sluice gen`): so many rows per second.

use std::time::Duration;

/// Paces a generator to `rows_per_second` in batches of a tenth of a second (0 = unpaced).
pub struct Pacer {
    interval: Option<tokio::time::Interval>,
    pub batch_rows: usize,
}

impl Pacer {
    pub fn new(rows_per_second: u64, max_batch: usize) -> Self {
        if rows_per_second == 0 {
            return Pacer {
                interval: None,
                batch_rows: max_batch,
            };
        }
        let per_tick = (rows_per_second / 10).max(1);
        let batch_rows = (per_tick as usize).min(max_batch);
        let tick = Duration::from_secs_f64(batch_rows as f64 / rows_per_second as f64);
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        Pacer {
            interval: Some(interval),
            batch_rows,
        }
    }

    pub async fn wait(&mut self) {
        match &mut self.interval {
            Some(i) => {
                i.tick().await;
            }
            None => tokio::task::yield_now().await,
        }
    }
}
