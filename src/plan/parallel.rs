//! How a pipeline's work is split over subtasks (`parallelism.default`): a pipeline whose state
//! is keyed runs as N copies, and each input row goes to the copy that owns its key, so every
//! key's state lives in one subtask and results stay exactly those of one task. Rows are placed
//! by source columns, so the source routes them before any channel: no second hop.

use crate::operators::Operators;

/// A pipeline's parallelism, as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parallelism {
    /// One task; `reason` says why when more were asked for.
    Single { reason: Option<String> },
    /// `subtasks` copies; each input's rows go by a hash of these columns of its source's rows
    /// (one list per pipeline input, in input order, equal keys in the same positions).
    Keyed {
        subtasks: usize,
        keys: Vec<Vec<usize>>,
    },
    /// `subtasks` copies, each given whole batches in turn: a local aggregation, whose partial
    /// results the next stage merges, so any row may go anywhere.
    Spread { subtasks: usize },
    /// One subtask per partition of the Kafka topic it reads, each fed by its partition alone;
    /// this process runs those of the `owned` partitions (a worker of a job several processes
    /// share). Rows meet where the topic's producer put them: by its message key.
    Partitions {
        partitions: usize,
        owned: Vec<usize>,
    },
}

impl Parallelism {
    /// The subtasks that run in this process.
    pub fn subtasks(&self) -> usize {
        match self {
            Parallelism::Single { .. } => 1,
            Parallelism::Keyed { subtasks, .. } | Parallelism::Spread { subtasks } => *subtasks,
            Parallelism::Partitions { owned, .. } => owned.len(),
        }
    }

    /// The subtasks of the whole job: the `n` of the ids `[k/n]`.
    pub fn total(&self) -> usize {
        match self {
            Parallelism::Partitions { partitions, .. } => *partitions,
            _ => self.subtasks(),
        }
    }

    /// The index `k` of the ids `[k/n]` of the subtasks that run here, in order.
    pub fn running(&self) -> Vec<usize> {
        match self {
            Parallelism::Partitions { owned, .. } => owned.clone(),
            _ => (0..self.subtasks()).collect(),
        }
    }
}

/// The parallelism of a pipeline reading `inputs` through `operators`, when `requested`
/// subtasks are asked for.
pub fn plan_parallelism(operators: &Operators, inputs: &[usize], requested: usize) -> Parallelism {
    if requested <= 1 {
        return Parallelism::Single { reason: None };
    }
    let single = |reason: String| Parallelism::Single {
        reason: Some(reason),
    };
    let keyed: Vec<usize> = (0..operators.len())
        .filter(|&i| operators.get(i).state_key(0).is_some())
        .collect();
    if keyed.is_empty() {
        return single("it keeps no keyed state (its work is its source's)".into());
    }
    if let Some(op) = operators.first_without_instances() {
        return single(format!("`{}` cannot run as subtasks yet", op.describe()));
    }
    let routes = match keyed.as_slice() {
        [only] => routes_of(operators, *only, inputs),
        several => shared_key(operators, several, inputs),
    };
    match routes {
        Ok(keys) => Parallelism::Keyed {
            subtasks: requested,
            keys,
        },
        Err(reason) => single(reason),
    }
}

/// The source columns each input is routed by for the one keyed operator `op`: every position
/// of its key that traces back to exactly one column of each input.
fn routes_of(
    operators: &Operators,
    op: usize,
    inputs: &[usize],
) -> Result<Vec<Vec<usize>>, String> {
    let node = operators.get(op);
    let feeds = operators.feeds(op);
    let keys: Vec<Vec<usize>> = (0..feeds.len())
        .map(|k| node.state_key(k).unwrap_or_default())
        .collect();
    let positions = keys.iter().map(Vec::len).min().unwrap_or(0);
    let mut routes: Vec<Vec<usize>> = vec![Vec::new(); inputs.len()];
    for p in 0..positions {
        let mut found: Vec<Vec<usize>> = vec![Vec::new(); inputs.len()];
        let mut traced = true;
        for (key, &feed) in keys.iter().zip(feeds) {
            let columns = operators.trace(feed, key[p]);
            traced &= !columns.is_empty();
            for (source, column) in columns {
                if let Some(i) = inputs.iter().position(|&s| s == source) {
                    found[i].push(column);
                }
            }
        }
        // A self-join on two columns of one source cannot place a row by one of them.
        let one_each = found.iter().all(|f| f.windows(2).all(|w| w[0] == w[1]));
        if traced && one_each && found.iter().all(|f| !f.is_empty()) {
            for (route, f) in routes.iter_mut().zip(found) {
                route.push(f[0]);
            }
        }
    }
    if routes.iter().any(Vec::is_empty) {
        return Err(format!(
            "`{}` has no key column that comes unchanged from its source (a global aggregate, or a computed key)",
            node.describe()
        ));
    }
    Ok(routes)
}

/// Several keyed operators over one input: it is routed by the source columns all their keys
/// contain.
fn shared_key(
    operators: &Operators,
    keyed: &[usize],
    inputs: &[usize],
) -> Result<Vec<Vec<usize>>, String> {
    if inputs.len() != 1 {
        return shared_across_inputs(operators, keyed, inputs);
    }
    let mut shared: Option<Vec<usize>> = None;
    for &op in keyed {
        let columns = routes_of(operators, op, inputs)
            .map(|mut r| r.remove(0))
            .unwrap_or_default();
        shared = Some(match shared {
            None => columns,
            Some(before) => before.into_iter().filter(|c| columns.contains(c)).collect(),
        });
    }
    let mut key = shared.unwrap_or_default();
    key.sort_unstable();
    key.dedup();
    if key.is_empty() {
        return Err(format!(
            "its keyed operators ({}) share no key column of the source, and no cut in two stages spreads them",
            described(operators, keyed)
        ));
    }
    Ok(vec![key])
}

/// Several keyed operators over several inputs (aggregates per side, then a join of them): the
/// routes of one that reads every input, when each other keyed operator's key holds the
/// columns of every input it reads that those routes spread by.
fn shared_across_inputs(
    operators: &Operators,
    keyed: &[usize],
    inputs: &[usize],
) -> Result<Vec<Vec<usize>>, String> {
    let holds = |op: usize, routes: &[Vec<usize>]| {
        let node = operators.get(op);
        operators.feeds(op).iter().enumerate().all(|(k, &feed)| {
            let key = node.state_key(k).unwrap_or_default();
            inputs.iter().zip(routes).all(|(&source, route)| {
                !operators.reaches(feed, source)
                    || route.iter().all(|&c| {
                        key.iter()
                            .any(|&x| operators.trace(feed, x).contains(&(source, c)))
                    })
            })
        })
    };
    keyed
        .iter()
        .filter_map(|&op| routes_of(operators, op, inputs).ok())
        .find(|routes| keyed.iter().all(|&op| holds(op, routes)))
        .ok_or_else(|| {
            format!(
                "its keyed operators ({}) over several inputs are keyed differently",
                described(operators, keyed)
            )
        })
}

/// The operators `ops`, as EXPLAIN names them, for a reason given in it.
fn described(operators: &Operators, ops: &[usize]) -> String {
    ops.iter()
        .map(|&i| format!("`{}`", operators.get(i).describe()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// For keyed operator `op` of a pipeline routed by `keys` (one list of source columns per
/// input): per input of the operator, its own input columns that hold those source columns, in
/// the router's order. Hashing them finds the subtask a kept row belongs to when state moves
/// to another parallelism. `None` when some route column is not among its key.
pub fn operator_routes(
    operators: &Operators,
    op: usize,
    inputs: &[usize],
    keys: &[Vec<usize>],
) -> Option<Vec<Vec<usize>>> {
    let node = operators.get(op);
    operators
        .feeds(op)
        .iter()
        .enumerate()
        .map(|(k, &feed)| {
            let candidates = node.state_key(k)?;
            // The pipeline input this operator input reads: the one all its route columns
            // trace to.
            inputs.iter().zip(keys).find_map(|(&source, route)| {
                route
                    .iter()
                    .map(|&c| {
                        candidates
                            .iter()
                            .copied()
                            .find(|&x| operators.trace(feed, x).contains(&(source, c)))
                    })
                    .collect::<Option<Vec<usize>>>()
            })
        })
        .collect()
}

/// The input of a pipeline's second stage: the rows its first stage hands over.
pub const STAGE_INPUT: usize = usize::MAX;

/// A pipeline cut in two stages with an exchange between them.
pub struct Stages {
    pub first: Operators,
    pub first_parallelism: Parallelism,
    pub second: Operators,
    pub second_parallelism: Parallelism,
}

/// Two stages for a chain that cannot run as subtasks by its source's columns: operators keyed
/// differently (a Top-N per window over an aggregate per vehicle), or a key a projection
/// computed on the way. The cut goes before the first operator from which on the rest can be
/// spread by columns of what comes before it; the first stage must be spread by its source's
/// columns, or keep no keyed state. Failing that, an aggregate in two phases when `two_phase`:
/// a window aggregate, or an updating one when `mini_batch` (as in Flink, whose local phase of
/// an updating aggregate is one per mini-batch). `None` when nothing does.
pub fn plan_stages(
    operators: &Operators,
    inputs: &[usize],
    requested: usize,
    watermark: &crate::stream::WatermarkCell,
    two_phase: bool,
    mini_batch: bool,
) -> Option<Stages> {
    if requested <= 1 || inputs.len() != 1 {
        return None;
    }
    let cut = (1..operators.len()).find_map(|at| {
        let (first, second) = operators.split_at(at, STAGE_INPUT, watermark)?;
        let second_parallelism = plan_parallelism(&second, &[STAGE_INPUT], requested);
        if !matches!(second_parallelism, Parallelism::Keyed { .. }) {
            return None;
        }
        let first_parallelism = plan_parallelism(&first, inputs, requested);
        if first.keep_state() && !matches!(first_parallelism, Parallelism::Keyed { .. }) {
            return None;
        }
        Some(Stages {
            first,
            first_parallelism,
            second,
            second_parallelism,
        })
    });
    cut.or_else(|| {
        two_phase
            .then(|| two_phases(operators, requested, watermark, mini_batch))
            .flatten()
    })
}

/// Two phases of the first keyed operator that has them (a window aggregate over the window
/// alone, or over a computed key; an updating aggregate without a key), when nothing keyed
/// comes before it: its local phase on
/// subtasks given rows in turn, its global phase — and what follows — keyed by what the local
/// phase emits if it can be, else in one task (Flink's two-phase aggregation).
fn two_phases(
    operators: &Operators,
    requested: usize,
    watermark: &crate::stream::WatermarkCell,
    mini_batch: bool,
) -> Option<Stages> {
    let at = (0..operators.len()).find(|&i| operators.get(i).state_kind().is_some())?;
    if operators.get(at).state_kind() == Some("group-aggregate") && !mini_batch {
        return None;
    }
    let (first, second) = operators.split_in_phases(at, STAGE_INPUT, watermark)?;
    let mut second_parallelism = plan_parallelism(&second, &[STAGE_INPUT], requested);
    if let Parallelism::Single { reason } = &mut second_parallelism {
        if (1..second.len()).any(|i| second.get(i).state_kind().is_some()) {
            // Keyed operators after the global phase: left to one task, as before.
            return None;
        }
        *reason = Some("it merges the partial aggregates of every subtask (no key)".into());
    }
    Some(Stages {
        first,
        first_parallelism: Parallelism::Spread {
            subtasks: requested,
        },
        second,
        second_parallelism,
    })
}
