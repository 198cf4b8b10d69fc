//! `fleet-sim`: realistic vehicle telemetry (docs/fleet.md), deterministic for a seed.
//!
//! Each vehicle alternates trips and parking. While on, it reports once per simulated second at a
//! fixed millisecond phase: speed follows a target (city, arterial or highway), braking is
//! smooth except for rare harsh-braking runs (accel below −4 m/s², only after fast driving),
//! short stops keep reporting, parking is silent between `ignition_off` and `ignition_on`.
//! A small share of events is delivered late (out of order by up to `jitter.max`), so event-time
//! handling gets exercised. Rare `sos`, `crash` and `door_open` events are mixed in.
//!
//! Simulated event time runs independently of the wall clock; `rows-per-second` only paces
//! delivery. The same generator backs `sluice gen fleet` (to Kafka or a file).

use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, Float64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::pacer::Pacer;
use crate::options::OptionError;
use crate::options::OptionReader;
use crate::stream::{JobError, Position, Source, SourceEnd, SourceOutput};

/// The telemetry schema (docs/fleet.md); a table declares any subset of these columns.
pub fn telemetry_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("vehicle_id", DataType::Utf8, false),
        Field::new("driver_id", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("lat", DataType::Float64, false),
        Field::new("lon", DataType::Float64, false),
        Field::new("speed_kmh", DataType::Float64, false),
        Field::new("accel_ms2", DataType::Float64, false),
        Field::new("engine_temp_c", DataType::Float64, false),
        Field::new("fuel_pct", DataType::Float64, false),
        Field::new("event_type", DataType::Utf8, false),
    ]))
}

#[derive(Debug, Clone)]
pub struct FleetSimConfig {
    pub vehicles: u32,
    pub seed: u64,
    /// 0 = as fast as possible.
    pub rows_per_second: u64,
    pub number_of_rows: Option<u64>,
    /// Event time of the first second, ms since epoch; `None` = now at start.
    pub start_ms: Option<i64>,
    pub jitter_max: Duration,
    pub schema: SchemaRef,
}

/// The options `from_options` reads, with their choices (for the shell's completion).
pub const OPTIONS: &[(&str, &[&str])] = &[
    ("vehicles", &[]),
    ("rows-per-second", &[]),
    ("number-of-rows", &[]),
    ("seed", &[]),
    ("start-time", &[]),
    ("jitter.max", &[]),
];

impl FleetSimConfig {
    pub fn from_options(opts: &OptionReader, schema: &SchemaRef) -> Result<Self, OptionError> {
        let all = telemetry_schema();
        for f in schema.fields() {
            if all.field_with_name(f.name()).is_err() {
                let names: Vec<&str> = all.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(opts.error(
                    "connector",
                    format!(
                        "fleet-sim has no field `{}`; its fields: {}",
                        f.name(),
                        names.join(", ")
                    ),
                ));
            }
        }
        let start_ms = match opts.optional("start-time") {
            None => None,
            Some(text) => Some(parse_start(&text).ok_or_else(|| {
                opts.error(
                    "start-time",
                    format!("option 'start-time' = '{text}' is not 'yyyy-MM-dd HH:mm:ss'"),
                )
            })?),
        };
        Ok(FleetSimConfig {
            vehicles: opts.parse_or("vehicles", 100, "a number of vehicles")?,
            seed: opts.parse_or("seed", 42, "an integer seed")?,
            rows_per_second: opts.parse_or(
                "rows-per-second",
                1000,
                "a number of rows per second",
            )?,
            number_of_rows: opts.parse_opt("number-of-rows", "a number of rows")?,
            start_ms,
            jitter_max: opts
                .duration_opt("jitter.max")?
                .unwrap_or(Duration::from_millis(1999)),
            schema: schema.clone(),
        })
    }

    pub fn describe(&self) -> String {
        let bound = self
            .number_of_rows
            .map_or("unbounded".to_string(), |n| format!("{n} rows"));
        format!(
            "fleet-sim vehicles={} seed={} rows-per-second={} {bound}",
            self.vehicles, self.seed, self.rows_per_second
        )
    }
}

fn parse_start(text: &str) -> Option<i64> {
    let t = text.trim();
    let parsed = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S"))
        .ok()?;
    Some(parsed.and_utc().timestamp_millis())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Driving { trip_left: u32 },
    Stopped { left: u32, trip_left: u32 },
    Parked { left: u32 },
}

struct Vehicle {
    id: String,
    driver: u32,
    phase_ms: i64,
    state: Phase,
    lat: f64,
    lon: f64,
    heading: f64,
    speed: f64,
    target: f64,
    brake_left: u32,
    engine_temp: f64,
    fuel: f64,
}

struct Event {
    vehicle: usize,
    ts: i64,
    lat: f64,
    lon: f64,
    speed: f64,
    accel: f64,
    engine_temp: f64,
    fuel: f64,
    kind: &'static str,
    driver: u32,
}

/// Ordered by delivery time, then generation order: a min-heap via reversed comparison.
struct Pending {
    deliver_at: i64,
    seq: u64,
    event: Event,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.deliver_at, self.seq) == (o.deliver_at, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.deliver_at, o.seq).cmp(&(self.deliver_at, self.seq))
    }
}

/// The simulation: call [`FleetSimulator::next_batch`] for the next events in delivery order.
pub struct FleetSimulator {
    rng: Pcg64,
    vehicles: Vec<Vehicle>,
    start_ms: i64,
    second: i64,
    jitter_max_ms: i64,
    pending: BinaryHeap<Pending>,
    seq: u64,
    next_driver: u32,
}

impl FleetSimulator {
    pub fn new(vehicles: u32, seed: u64, start_ms: i64, jitter_max: Duration) -> Self {
        let mut rng = Pcg64::seed_from_u64(seed);
        let fleet = (0..vehicles)
            .map(|i| {
                let parked = rng.random_bool(0.2);
                Vehicle {
                    id: format!("V{:04}", i + 1),
                    driver: i + 1,
                    phase_ms: rng.random_range(0..1000),
                    state: if parked {
                        Phase::Parked {
                            left: rng.random_range(1..120),
                        }
                    } else {
                        Phase::Driving {
                            trip_left: rng.random_range(180..1500),
                        }
                    },
                    lat: 52.52 + rng.random_range(-0.15..0.15),
                    lon: 13.40 + rng.random_range(-0.25..0.25),
                    heading: rng.random_range(0.0..std::f64::consts::TAU),
                    speed: if parked {
                        0.0
                    } else {
                        rng.random_range(20.0..70.0)
                    },
                    target: rng.random_range(30.0..60.0),
                    brake_left: 0,
                    engine_temp: if parked {
                        25.0
                    } else {
                        rng.random_range(70.0..90.0)
                    },
                    fuel: rng.random_range(30.0..100.0),
                }
            })
            .collect();
        FleetSimulator {
            rng,
            vehicles: fleet,
            start_ms,
            second: 0,
            jitter_max_ms: i64::try_from(jitter_max.as_millis()).unwrap_or(i64::MAX),
            pending: BinaryHeap::new(),
            seq: 0,
            next_driver: vehicles + 1,
        }
    }

    /// Up to `max_rows` events, in delivery order.
    pub fn next_batch(&mut self, max_rows: usize) -> RecordBatch {
        let mut events = Vec::with_capacity(max_rows);
        while events.len() < max_rows {
            let horizon = self.start_ms + self.second * 1000;
            while events.len() < max_rows
                && self.pending.peek().is_some_and(|p| p.deliver_at < horizon)
            {
                events.push(self.pending.pop().expect("peeked").event);
            }
            if events.len() < max_rows {
                self.simulate_second();
            }
        }
        self.to_batch(&events)
    }

    fn simulate_second(&mut self) {
        let base = self.start_ms + self.second * 1000;
        for i in 0..self.vehicles.len() {
            if let Some(event) = self.step(i, base) {
                let delay = if self.jitter_max_ms > 0 && self.rng.random_bool(0.02) {
                    self.rng.random_range(1..=self.jitter_max_ms)
                } else {
                    0
                };
                self.seq += 1;
                self.pending.push(Pending {
                    deliver_at: event.ts.saturating_add(delay),
                    seq: self.seq,
                    event,
                });
            }
        }
        self.second += 1;
    }

    /// Advances one vehicle by one second; returns the event it reports, if it is on.
    fn step(&mut self, i: usize, base: i64) -> Option<Event> {
        let rng = &mut self.rng;
        let v = &mut self.vehicles[i];
        let ts = base + v.phase_ms;
        let mut kind = "telemetry";
        let prev_speed = v.speed;
        match v.state {
            Phase::Parked { left } if left > 1 => {
                v.state = Phase::Parked { left: left - 1 };
                v.engine_temp = (v.engine_temp - 0.05).max(20.0);
                return None;
            }
            Phase::Parked { .. } => {
                v.state = Phase::Driving {
                    trip_left: rng.random_range(180..1500),
                };
                if rng.random_bool(0.3) {
                    v.driver = self.next_driver;
                    self.next_driver += 1;
                }
                kind = "ignition_on";
                v.speed = 0.0;
            }
            Phase::Stopped { left, trip_left } => {
                v.speed = 0.0;
                v.state = if left > 1 {
                    Phase::Stopped {
                        left: left - 1,
                        trip_left,
                    }
                } else {
                    Phase::Driving { trip_left }
                };
                if left == 3 && rng.random_bool(0.3) {
                    kind = "door_open";
                }
            }
            Phase::Driving { trip_left } if trip_left <= 1 => {
                let parking = match rng.random_range(0..100) {
                    0..88 => rng.random_range(330..1500),
                    88..92 => 300,
                    92..96 => 299,
                    _ => rng.random_range(60..240),
                };
                v.state = Phase::Parked { left: parking };
                v.speed = 0.0;
                kind = "ignition_off";
            }
            Phase::Driving { trip_left } => {
                v.state = Phase::Driving {
                    trip_left: trip_left - 1,
                };
                if v.brake_left > 0 {
                    v.brake_left -= 1;
                    let decel = rng.random_range(4.2..9.0);
                    v.speed = (v.speed - decel * 3.6).max(0.0);
                } else {
                    if rng.random_bool(0.01) {
                        v.target = match rng.random_range(0..10) {
                            0..4 => rng.random_range(25.0..50.0),
                            4..7 => rng.random_range(50.0..80.0),
                            _ => rng.random_range(90.0..140.0),
                        };
                    }
                    if v.speed > 80.0 && rng.random_bool(0.003) {
                        v.brake_left = rng.random_range(2..=5);
                    }
                    let accel = ((v.target - v.speed) / 3.6 * 0.3 + rng.random_range(-0.4..0.4))
                        .clamp(-3.5, 3.0);
                    v.speed = (v.speed + accel * 3.6).max(0.0);
                    if rng.random_bool(0.002) {
                        v.state = Phase::Stopped {
                            left: rng.random_range(10..90),
                            trip_left: trip_left - 1,
                        };
                    }
                }
                v.heading += rng.random_range(-0.1..0.1);
                if rng.random_bool(0.00002) {
                    kind = "sos";
                } else if v.brake_left == 0 && prev_speed - v.speed > 25.0 && rng.random_bool(0.01)
                {
                    kind = "crash";
                }
            }
        }
        let accel = (v.speed - prev_speed) / 3.6;
        let meters = v.speed / 3.6;
        v.lat += meters * v.heading.cos() / 111_320.0;
        v.lon += meters * v.heading.sin() / (111_320.0 * v.lat.to_radians().cos());
        v.engine_temp = (v.engine_temp
            + (85.0 + v.speed / 10.0 - v.engine_temp) * 0.02
            + rng.random_range(-0.2..0.2))
        .clamp(20.0, 125.0);
        v.fuel = (v.fuel - v.speed * 0.00002).max(2.0);
        if v.fuel < 5.0 && rng.random_bool(0.001) {
            v.fuel = 100.0;
        }
        Some(Event {
            vehicle: i,
            ts,
            lat: v.lat,
            lon: v.lon,
            speed: round(v.speed, 2),
            accel: round(accel, 3),
            engine_temp: round(v.engine_temp, 2),
            fuel: round(v.fuel, 3),
            kind,
            driver: v.driver,
        })
    }

    fn to_batch(&self, events: &[Event]) -> RecordBatch {
        let n = events.len();
        let mut vehicle = StringBuilder::with_capacity(n, n * 5);
        let mut driver = StringBuilder::with_capacity(n, n * 5);
        let mut ts = TimestampMillisecondBuilder::with_capacity(n);
        let mut f: Vec<Float64Builder> = (0..6).map(|_| Float64Builder::with_capacity(n)).collect();
        let mut kind = StringBuilder::with_capacity(n, n * 9);
        for e in events {
            vehicle.append_value(&self.vehicles[e.vehicle].id);
            driver.append_value(format!("D{:04}", e.driver));
            ts.append_value(e.ts);
            for (b, v) in f.iter_mut().zip([
                round(e.lat, 6),
                round(e.lon, 6),
                e.speed,
                e.accel,
                e.engine_temp,
                e.fuel,
            ]) {
                b.append_value(v);
            }
            kind.append_value(e.kind);
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(vehicle.finish()),
            Arc::new(driver.finish()),
            Arc::new(ts.finish()),
        ];
        columns.extend(f.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.push(Arc::new(kind.finish()));
        RecordBatch::try_new(telemetry_schema(), columns)
            .expect("columns match the telemetry schema")
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (v * p).round() / p
}

/// Picks (and casts) the table's declared columns from a telemetry batch.
pub fn select_columns(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, JobError> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let col = batch
                .column_by_name(f.name())
                .ok_or_else(|| JobError::internal(format!("no telemetry field {}", f.name())))?;
            Ok(if col.data_type() == f.data_type() {
                col.clone()
            } else {
                cast(col, f.data_type())?
            })
        })
        .collect::<Result<Vec<_>, JobError>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The position key of a simulation, followed by its start time in milliseconds.
const SIM_KEY: &str = "fleet-sim@";

pub struct FleetSimSource {
    config: FleetSimConfig,
}

impl FleetSimSource {
    pub fn new(config: FleetSimConfig) -> Result<Self, JobError> {
        Ok(FleetSimSource { config })
    }
}

#[async_trait]
impl Source for FleetSimSource {
    async fn run(self: Box<Self>, out: &mut dyn SourceOutput) -> Result<SourceEnd, JobError> {
        let c = &self.config;
        // The position's key carries the start time, so a restored simulation (with no
        // `start` option: it started "now") replays the same events: the same seed and start
        // give the same stream, fast-forwarded past what was already produced.
        let restored = out
            .restored()
            .iter()
            .find_map(|(k, n)| Some((k.strip_prefix(SIM_KEY)?.parse::<i64>().ok()?, *n)));
        let (start, mut produced) = restored.unwrap_or_else(|| {
            let start = c
                .start_ms
                .unwrap_or_else(|| chrono::Utc::now().timestamp_millis() / 1000 * 1000);
            (start, 0)
        });
        let key: std::sync::Arc<str> = format!("{SIM_KEY}{start}").into();
        let mut sim = FleetSimulator::new(c.vehicles, c.seed, start, c.jitter_max);
        let mut skipped = 0u64;
        while skipped < produced {
            let n = (produced - skipped).min(65_536) as usize;
            skipped += sim.next_batch(n).num_rows() as u64;
        }
        out.set_splits(1);
        let mut pacer = Pacer::new(c.rows_per_second, out.batch_size());
        loop {
            let want = c.number_of_rows.map_or(pacer.batch_rows, |n| {
                n.saturating_sub(produced).min(pacer.batch_rows as u64) as usize
            });
            if want == 0 {
                return Ok(SourceEnd::Exhausted);
            }
            tokio::select! {
                _ = pacer.wait() => {}
                _ = out.stopped() => return Ok(SourceEnd::Stopped),
            }
            let batch = sim.next_batch(want);
            produced += batch.num_rows() as u64;
            let at = Position {
                key: key.clone(),
                next: produced,
            };
            out.emit(0, select_columns(&batch, &c.schema)?, at).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Float64Array};
    use arrow::datatypes::{Float64Type, TimestampMillisecondType};

    #[test]
    fn same_seed_same_events() {
        let a = FleetSimulator::new(20, 7, 0, Duration::from_millis(1999)).next_batch(5000);
        let b = FleetSimulator::new(20, 7, 0, Duration::from_millis(1999)).next_batch(5000);
        assert_eq!(a, b);
        let c = FleetSimulator::new(20, 8, 0, Duration::from_millis(1999)).next_batch(5000);
        assert_ne!(a, c);
    }

    #[test]
    fn disorder_is_bounded_by_jitter_and_events_are_realistic() {
        let batch = FleetSimulator::new(50, 1, 0, Duration::from_millis(1999)).next_batch(200_000);
        let ts = batch.column(2).as_primitive::<TimestampMillisecondType>();
        let mut max_seen = i64::MIN;
        let mut late = 0;
        for t in ts.values().iter() {
            assert!(
                *t > max_seen.saturating_sub(2000),
                "an event is out of order by more than the jitter"
            );
            if *t < max_seen {
                late += 1;
            }
            max_seen = max_seen.max(*t);
        }
        assert!(late > 0, "some events are delivered out of order");
        let accel: &Float64Array = batch.column(6).as_primitive::<Float64Type>();
        assert!(
            accel.values().iter().any(|a| *a < -4.0),
            "harsh braking occurs"
        );
        let speed = batch.column(5).as_primitive::<Float64Type>();
        assert!(
            speed.values().iter().any(|s| *s > 120.0),
            "overspeed occurs"
        );
        let kinds = batch.column(9).as_string::<i32>();
        assert!(kinds.iter().any(|k| k == Some("ignition_off")));
    }
}
