//! Geodesy for fleet pipelines, which neither Flink nor DataFusion ship:
//!
//! - `HAVERSINE_KM(lat1, lon1, lat2, lon2)`: great-circle distance in kilometres (mean Earth
//!   radius 6371.0088 km, the IUGG value; ClickHouse's `greatCircleDistance` uses the same model
//!   within 0.5 %), NULL when any argument is NULL.
//! - `TRACK_DISTANCE_KM(ts, lat, lon)`: an aggregate, the length of the track through a group's
//!   points taken in event-time order — the sum of the haversine steps between consecutive
//!   points. It keeps the group's points and sorts them when evaluated, so it is exact whatever
//!   order rows arrive in and however session windows merge. Points with a NULL are skipped.

use std::mem::size_of;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, ListArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type, TimeUnit};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};

const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Great-circle distance between two points given in degrees, in kilometres.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let dphi = phi2 - phi1;
    let dlambda = (lon2 - lon1).to_radians();
    let a = (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HaversineKm {
    signature: Signature,
}

impl HaversineKm {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(HaversineKm {
            signature: Signature::uniform(4, vec![DataType::Float64], Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for HaversineKm {
    fn name(&self) -> &str {
        "haversine_km"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [lat1, lon1, lat2, lon2] =
            [0, 1, 2, 3].map(|i| arrays[i].as_primitive::<Float64Type>());
        let distances: Float64Array = (0..lat1.len())
            .map(|i| {
                let valid = [lat1, lon1, lat2, lon2].iter().all(|a| a.is_valid(i));
                valid.then(|| {
                    haversine_km(lat1.value(i), lon1.value(i), lat2.value(i), lon2.value(i))
                })
            })
            .collect();
        if all_scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &distances, 0,
            )?));
        }
        Ok(ColumnarValue::Array(Arc::new(distances)))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TrackDistanceKm {
    signature: Signature,
}

impl TrackDistanceKm {
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::new_from_impl(TrackDistanceKm {
            signature: Signature::any(3, Volatility::Immutable),
        })
    }
}

impl AggregateUDFImpl for TrackDistanceKm {
    fn name(&self) -> &str {
        "track_distance_km"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [DataType::Timestamp(..), lat, lon] if lat.is_numeric() && lon.is_numeric() => {
                Ok(DataType::Float64)
            }
            _ => plan_err!(
                "TRACK_DISTANCE_KM takes (event time TIMESTAMP, latitude, longitude), not {arg_types:?}"
            ),
        }
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::<TrackAccumulator>::default())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = |name: &str, item: DataType| {
            let item = Field::new_list_field(item, false);
            Arc::new(Field::new(
                format!("{}[{name}]", args.name),
                DataType::List(Arc::new(item)),
                true,
            ))
        };
        Ok(vec![
            list("ts", DataType::Int64),
            list("lat", DataType::Float64),
            list("lon", DataType::Float64),
        ])
    }
}

/// A group's points as (epoch milliseconds, latitude, longitude), in arrival order.
#[derive(Debug, Default)]
struct TrackAccumulator {
    points: Vec<(i64, f64, f64)>,
}

impl TrackAccumulator {
    fn push_columns(&mut self, ts: &ArrayRef, lat: &ArrayRef, lon: &ArrayRef) -> Result<()> {
        let ts = cast(ts, &DataType::Int64)?;
        let (ts, lat, lon) = (
            ts.as_primitive::<Int64Type>(),
            lat.as_primitive::<Float64Type>(),
            lon.as_primitive::<Float64Type>(),
        );
        self.points.reserve(ts.len());
        for i in 0..ts.len() {
            if ts.is_valid(i) && lat.is_valid(i) && lon.is_valid(i) {
                self.points.push((ts.value(i), lat.value(i), lon.value(i)));
            }
        }
        Ok(())
    }
}

impl Accumulator for TrackAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [ts, lat, lon] = values else {
            return exec_err!("TRACK_DISTANCE_KM takes 3 arguments, got {}", values.len());
        };
        // Milliseconds whatever the column's precision, so the state merges across inputs.
        let ts = cast(ts, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
        let lat = cast(lat, &DataType::Float64)?;
        let lon = cast(lon, &DataType::Float64)?;
        self.push_columns(&ts, &lat, &lon)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [ts, lat, lon] = states else {
            return exec_err!(
                "TRACK_DISTANCE_KM state has 3 columns, got {}",
                states.len()
            );
        };
        let (ts, lat, lon) = (
            ts.as_list::<i32>(),
            lat.as_list::<i32>(),
            lon.as_list::<i32>(),
        );
        for row in 0..ts.len() {
            if ts.is_valid(row) {
                self.push_columns(&ts.value(row), &lat.value(row), &lon.value(row))?;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let ts = ListArray::from_iter_primitive::<Int64Type, _, _>([Some(
            self.points.iter().map(|p| Some(p.0)),
        )]);
        let lat = ListArray::from_iter_primitive::<Float64Type, _, _>([Some(
            self.points.iter().map(|p| Some(p.1)),
        )]);
        let lon = ListArray::from_iter_primitive::<Float64Type, _, _>([Some(
            self.points.iter().map(|p| Some(p.2)),
        )]);
        Ok([ts, lat, lon]
            .map(|list| ScalarValue::List(Arc::new(non_nullable_items(list))))
            .into())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.points.is_empty() {
            return Ok(ScalarValue::Float64(None));
        }
        // Stable: points with equal times keep their arrival order.
        self.points.sort_by_key(|p| p.0);
        let km = self
            .points
            .windows(2)
            .map(|w| haversine_km(w[0].1, w[0].2, w[1].1, w[1].2))
            // Not `sum()`: an empty f64 sum is -0.0, and a lone point must print as 0.
            .fold(0.0, |total, step| total + step);
        Ok(ScalarValue::Float64(Some(km)))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.points.capacity() * size_of::<(i64, f64, f64)>()
    }
}

/// `from_iter_primitive` declares nullable items; the state fields say non-nullable.
fn non_nullable_items(list: ListArray) -> ListArray {
    let (field, offsets, values, nulls) = list.into_parts();
    let field = Arc::new(field.as_ref().clone().with_nullable(false));
    ListArray::new(field, offsets, values, nulls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, TimestampMillisecondArray};

    #[test]
    fn haversine_matches_known_distances() {
        // Berlin Alexanderplatz → Brandenburger Tor ≈ 2.5 km; a degree of latitude ≈ 111.2 km.
        let km = haversine_km(52.5219, 13.4132, 52.5163, 13.3777);
        assert!((km - 2.48).abs() < 0.05, "{km}");
        let degree = haversine_km(0.0, 0.0, 1.0, 0.0);
        assert!((degree - 111.195).abs() < 0.01, "{degree}");
        assert_eq!(haversine_km(52.5, 13.4, 52.5, 13.4), 0.0);
    }

    fn column_batch(rows: &[(i64, f64, f64)]) -> Vec<ArrayRef> {
        vec![
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.0),
            )),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ]
    }

    #[test]
    fn track_distance_follows_event_time_not_arrival() {
        // East along the equator: 0 → 1 → 2 degrees of longitude, delivered out of order.
        let mut acc = TrackAccumulator::default();
        acc.update_batch(&column_batch(&[(2000, 0.0, 2.0), (0, 0.0, 0.0)]))
            .unwrap();
        acc.update_batch(&column_batch(&[(1000, 0.0, 1.0)]))
            .unwrap();
        let ScalarValue::Float64(Some(km)) = acc.evaluate().unwrap() else {
            panic!("no distance")
        };
        assert!((km - 2.0 * 111.195).abs() < 0.01, "{km}");
    }

    #[test]
    fn track_distance_merges_partial_states() {
        let mut left = TrackAccumulator::default();
        left.update_batch(&column_batch(&[(0, 0.0, 0.0), (2000, 0.0, 2.0)]))
            .unwrap();
        let mut right = TrackAccumulator::default();
        right
            .update_batch(&column_batch(&[(1000, 0.0, 1.0)]))
            .unwrap();
        let state: Vec<ArrayRef> = right
            .state()
            .unwrap()
            .into_iter()
            .map(|s| s.to_array().unwrap())
            .collect();
        left.merge_batch(&state).unwrap();
        let ScalarValue::Float64(Some(km)) = left.evaluate().unwrap() else {
            panic!("no distance")
        };
        // Merged, the track is 0 → 1 → 2, not 0 → 2 → 1 (which would be 3 degrees).
        assert!((km - 2.0 * 111.195).abs() < 0.01, "{km}");
        let mut empty = TrackAccumulator::default();
        assert_eq!(empty.evaluate().unwrap(), ScalarValue::Float64(None));
    }
}
