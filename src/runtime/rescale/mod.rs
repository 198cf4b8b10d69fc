//! Moving keyed state to another parallelism. A subtask of the new parallelism takes the
//! snapshots of the old subtasks whose key groups overlap its own and keeps the rows whose key
//! it owns now, as Flink redistributes key groups. Every keyed operator marks each stream of
//! its snapshot with the input columns its rows hold ([`snapshot::keyed`]), so this works on
//! the snapshots' Arrow batches without knowing any operator: it hashes those columns as the
//! source's router does, keeps this subtask's rows, and merges the small metadata values
//! (clocks, counters) by what they mean.

use std::collections::BTreeMap;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;

use super::exchange::{owners, subtask_of};
use crate::operators::snapshot;
use crate::plan::{Parallelism, PipelineNode, operator_routes};
use crate::stream::JobError;

/// Which rows of the old state a new subtask keeps.
struct Keep<'a> {
    /// Per operator input, the input columns its rows are routed by (`None`: one subtask
    /// keeps everything).
    routes: Option<&'a [Vec<usize>]>,
    subtask: usize,
    subtasks: usize,
    key_groups: u32,
}

impl Keep<'_> {
    /// True when old subtask `old` of `old_subtasks` owned a key group this subtask owns now:
    /// only those snapshots can hold its keys.
    fn overlaps(&self, old: usize, old_subtasks: usize) -> bool {
        (0..self.key_groups).any(|g| {
            subtask_of(g, self.key_groups, old_subtasks) == old
                && subtask_of(g, self.key_groups, self.subtasks) == self.subtask
        })
    }

    /// The rows of `batch` (a stream with `metadata`) whose key this subtask owns.
    fn rows(
        &self,
        metadata: &std::collections::HashMap<String, String>,
        batch: RecordBatch,
    ) -> Result<RecordBatch, JobError> {
        let Some(routes) = self.routes else {
            return Ok(batch);
        };
        if batch.num_rows() == 0 {
            return Ok(batch);
        }
        let unkeyed = || JobError::internal("state without its key cannot move between subtasks");
        let input: usize =
            snapshot::meta(metadata, snapshot::KEYED_INPUT).map_err(|_| unkeyed())?;
        let pairs: String = snapshot::meta(metadata, snapshot::KEYED_COLUMNS)?;
        let pairs: Vec<(usize, usize)> = pairs
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (part, column) = p.split_once(':')?;
                Some((part.parse().ok()?, column.parse().ok()?))
            })
            .collect::<Option<_>>()
            .ok_or_else(|| JobError::internal("a snapshot's key columns do not parse"))?;
        let keys: Vec<ArrayRef> = routes
            .get(input)
            .ok_or_else(unkeyed)?
            .iter()
            .map(|c| {
                let (part, _) = pairs.iter().find(|(_, input)| input == c)?;
                Some(batch.column(*part).clone())
            })
            .collect::<Option<_>>()
            .ok_or_else(unkeyed)?;
        let owners = owners(&keys, batch.num_rows(), self.key_groups, self.subtasks)?;
        let mine: BooleanArray = owners.iter().map(|&o| Some(o == self.subtask)).collect();
        Ok(filter_record_batch(&batch, &mine)?)
    }
}

/// The state of each operator of each of `node`'s subtasks at `parallelism`, from that of
/// each of its old subtasks (`old[subtask][operator]`; `None`: no state), with keyed state
/// divided into `key_groups`: each subtask takes the keys it owns now. Partial aggregates of
/// subtasks given rows in turn may sit anywhere: the first subtask takes them all.
pub fn spread(
    node: &PipelineNode,
    parallelism: &Parallelism,
    old: &[Vec<Option<&[u8]>>],
    key_groups: u32,
) -> Result<Vec<Vec<Option<Vec<u8>>>>, JobError> {
    let subtasks = parallelism.subtasks();
    let operators = node.operators.len();
    let mut spread: Vec<Vec<Option<Vec<u8>>>> = vec![vec![None; operators]; subtasks];
    for j in 0..operators {
        if old.iter().all(|o| o.get(j).is_none_or(Option::is_none)) {
            continue;
        }
        let routes = match parallelism {
            Parallelism::Keyed { keys, .. } => Some(
                operator_routes(&node.operators, j, &node.reads(), keys).ok_or_else(|| {
                    JobError::Checkpoint(format!(
                        "cannot spread the state of `{}` over {subtasks} subtasks: its key does not hold the columns its pipeline is spread by",
                        node.operators.get(j).describe()
                    ))
                })?,
            ),
            Parallelism::Single { .. }
            | Parallelism::Spread { .. }
            | Parallelism::Partitions { .. } => None,
        };
        let takers = match parallelism {
            Parallelism::Spread { .. } => 1,
            _ => subtasks,
        };
        for (subtask, state) in spread.iter_mut().enumerate().take(takers) {
            let keep = Keep {
                routes: routes.as_deref(),
                subtask,
                subtasks: takers,
                key_groups,
            };
            let blobs: Vec<&[u8]> = old
                .iter()
                .enumerate()
                .filter(|(k, _)| keep.overlaps(*k, old.len()))
                .filter_map(|(_, o)| o.get(j).copied().flatten())
                .collect();
            if !blobs.is_empty() {
                state[j] = Some(rescale(&blobs, &keep)?);
            }
        }
    }
    Ok(spread)
}

/// One operator's snapshot for the subtask `keep` describes, from the snapshots of the old
/// subtasks that may hold its keys (in subtask order).
fn rescale(old: &[&[u8]], keep: &Keep<'_>) -> Result<Vec<u8>, JobError> {
    let parted = old.first().is_some_and(|b| snapshot::has_parts(b));
    let split: Vec<Vec<&[u8]>> = old
        .iter()
        .map(|b| {
            if parted {
                snapshot::split_parts(b)
            } else {
                Ok(vec![*b])
            }
        })
        .collect::<Result<_, _>>()?;
    let count = split.first().map_or(0, Vec::len);
    if split.iter().any(|p| p.len() != count) {
        return Err(JobError::internal(
            "the subtasks' snapshots of one operator differ in shape",
        ));
    }
    let mut parts = (0..count)
        .map(|i| merge_stream(split.iter().map(|p| p[i]), keep))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(if parted {
        snapshot::join_parts(&parts)
    } else {
        parts.pop().unwrap_or_default()
    })
}

/// One stream of the snapshot: the kept rows of every old subtask's, with merged metadata.
fn merge_stream<'b>(
    streams: impl Iterator<Item = &'b [u8]>,
    keep: &Keep<'_>,
) -> Result<Vec<u8>, JobError> {
    let mut schema: Option<SchemaRef> = None;
    let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut batches = Vec::new();
    for bytes in streams {
        let (s, read) = snapshot::read(bytes)?;
        for b in read {
            let b = keep.rows(s.metadata(), b)?;
            if b.num_rows() > 0 {
                batches.push(b);
            }
        }
        for (k, v) in s.metadata() {
            values.entry(k.clone()).or_default().push(v.clone());
        }
        schema.get_or_insert(s);
    }
    let schema = schema.ok_or_else(|| JobError::internal("no snapshot to rescale"))?;
    let metadata = values
        .into_iter()
        .map(|(k, v)| Ok((k.clone(), merge_value(&k, &v, keep.subtask == 0)?)))
        .collect::<Result<_, JobError>>()?;
    snapshot::encode(&schema, metadata, &batches)
}

/// One metadata value from the old subtasks' values of `key`; counters go to the `first`
/// subtask only, so the job's totals stay the same.
fn merge_value(key: &str, values: &[String], first: bool) -> Result<String, JobError> {
    let numbers = || -> Result<Vec<i128>, JobError> {
        values
            .iter()
            .map(|v| v.parse::<i128>())
            .collect::<Result<_, _>>()
            .map_err(|_| JobError::internal(format!("snapshot value '{key}' is not a number")))
    };
    Ok(match key {
        // Every subtask saw the same watermarks; the lowest is safe in any case.
        "watermark" => numbers()?.into_iter().min().unwrap_or_default().to_string(),
        "late_rows" if first => numbers()?.into_iter().sum::<i128>().to_string(),
        "late_rows" => "0".to_string(),
        // An arrival counter orders rows: it only goes up.
        "arrivals" => numbers()?.into_iter().max().unwrap_or_default().to_string(),
        // Window ends still to fire, slices still open: those of any old subtask.
        "pending_ends" | "live" => {
            let mut all: Vec<i64> = values
                .iter()
                .flat_map(|v| v.split(','))
                .filter(|t| !t.is_empty())
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| JobError::internal(format!("bad '{key}' in a snapshot")))?;
            all.sort_unstable();
            all.dedup();
            all.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        }
        _ if values.windows(2).all(|w| w[0] == w[1]) => values[0].clone(),
        _ => {
            return Err(JobError::internal(format!(
                "the subtasks' snapshots disagree on '{key}'"
            )));
        }
    })
}

#[cfg(test)]
mod operators_test;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::rows;

    fn keyed_stream(text: &str, watermark: i64, late: u64) -> Vec<u8> {
        let b = rows(text);
        let mut metadata = snapshot::clock(watermark, late);
        metadata.extend(snapshot::keyed_rows(0, &b.schema()));
        snapshot::encode(&b.schema(), metadata, &[b]).unwrap()
    }

    fn keys_of(bytes: &[u8]) -> Vec<String> {
        let (_, batches) = snapshot::decode(bytes).unwrap();
        let mut keys: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let k = arrow::array::AsArray::as_string::<i32>(b.column(0)).clone();
                (0..b.num_rows()).map(move |i| k.value(i).to_string())
            })
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn each_key_lands_in_the_subtask_that_owns_it_now_and_counters_are_not_doubled() {
        let keys: Vec<String> = (0..40).map(|i| format!("V{i:03}")).collect();
        let table = |pick: &dyn Fn(usize) -> bool| {
            let mut t = "k:str n:i64\n".to_string();
            for (i, k) in keys.iter().enumerate().filter(|(i, _)| pick(*i)) {
                t += &format!("{k} {i}\n");
            }
            t
        };
        // Two old subtasks, each with half the keys (any split: rescale rehashes every row).
        let old = [
            keyed_stream(&table(&|i| i % 2 == 0), 1000, 3),
            keyed_stream(&table(&|i| i % 2 == 1), 900, 4),
        ];
        let old: Vec<&[u8]> = old.iter().map(Vec::as_slice).collect();
        let routes = vec![vec![0]];
        let mut seen = Vec::new();
        for subtask in 0..3 {
            let keep = Keep {
                routes: Some(&routes),
                subtask,
                subtasks: 3,
                key_groups: 128,
            };
            let bytes = rescale(&old, &keep).unwrap();
            let (metadata, _) = snapshot::decode(&bytes).unwrap();
            assert_eq!(metadata["watermark"], "900");
            assert_eq!(metadata["late_rows"], if subtask == 0 { "7" } else { "0" });
            for k in keys_of(&bytes) {
                let column: ArrayRef =
                    std::sync::Arc::new(arrow::array::StringArray::from(vec![k.as_str()]));
                assert_eq!(owners(&[column], 1, 128, 3).unwrap(), [subtask], "{k}");
                seen.push(k);
            }
        }
        seen.sort();
        assert_eq!(seen, keys, "every key once");
        // Back to one subtask: everything, in one snapshot.
        let keep = Keep {
            routes: None,
            subtask: 0,
            subtasks: 1,
            key_groups: 128,
        };
        assert_eq!(keys_of(&rescale(&old, &keep).unwrap()), keys);
    }

    #[test]
    fn state_without_its_key_is_not_moved() {
        let b = rows("k:str\na\n");
        let bytes = snapshot::encode(&b.schema(), Default::default(), &[b]).unwrap();
        let routes = vec![vec![0]];
        let keep = Keep {
            routes: Some(&routes),
            subtask: 0,
            subtasks: 2,
            key_groups: 128,
        };
        let e = rescale(&[&bytes], &keep).unwrap_err().to_string();
        assert!(e.contains("without its key"), "{e}");
    }
}
