//! SQL functions DataFusion lacks or has with batch semantics: Flink's `CURRENT_WATERMARK`,
//! processing time evaluated as rows are processed, and the geodesy a fleet pipeline needs
//! (`HAVERSINE_KM`, `TRACK_DISTANCE_KM`). Registered on every planner's session.

mod geo;
mod processing_time;
mod watermark;

use datafusion::prelude::SessionContext;

use crate::stream::new_watermark_cell;

pub use geo::{HaversineKm, TrackDistanceKm, haversine_km};
pub use processing_time::ProcessingTime;
pub use watermark::CurrentWatermark;

/// Registers Sluice's functions on a planning session. `CURRENT_WATERMARK` is registered with a
/// placeholder cell so the name resolves; each pipeline binds its own instance.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(CurrentWatermark::udf(new_watermark_cell()));
    ctx.register_udf(HaversineKm::udf());
    ctx.register_udaf(TrackDistanceKm::udaf());
    for udf in ProcessingTime::udfs() {
        ctx.register_udf(udf);
    }
}
