//! The shape of a pipeline's operators: usually a chain, each operator reading the one before;
//! a union or a join reads several branches, each a chain from one of the pipeline's inputs —
//! a source (both sides of a self-join read the same source's rows; a join of two tables reads
//! two). Kept as a list in an order where every operator comes
//! after those it reads, so one pass in order runs them all, and each operator has one place —
//! for its id in checkpoints, its metrics, its line in EXPLAIN.

pub use crate::stream::Feed;
use crate::stream::{Operator, WatermarkCell};

/// Operators and what each reads (see the module doc).
pub struct Operators {
    list: Vec<Box<dyn Operator>>,
    /// Per operator, the feeds it reads, in order (a join's left side first).
    feeds: Vec<Vec<Feed>>,
    /// The source a chain starts from.
    source: usize,
}

impl Operators {
    /// None yet, reading `source`.
    pub fn reading(source: usize) -> Self {
        Operators {
            list: Vec::new(),
            feeds: Vec::new(),
            source,
        }
    }

    /// Where the rows of the whole come out: the last operator, or the source when there is
    /// none.
    pub fn output(&self) -> Feed {
        match self.list.len() {
            0 => Feed::Input(self.source),
            n => Feed::Operator(n - 1),
        }
    }

    /// The sources the operators read, each once, in order of first use.
    pub fn inputs(&self) -> Vec<usize> {
        let mut sources = Vec::new();
        let read = self.feeds.iter().flatten().filter_map(|f| match f {
            Feed::Input(s) => Some(*s),
            Feed::Operator(_) => None,
        });
        for s in read.chain(self.list.is_empty().then_some(self.source)) {
            if !sources.contains(&s) {
                sources.push(s);
            }
        }
        sources
    }

    /// Appends `op` reading what comes out so far.
    pub fn push(&mut self, op: Box<dyn Operator>) {
        let feed = self.output();
        self.list.push(op);
        self.feeds.push(vec![feed]);
    }

    /// `op` reading the outputs of `branches`, in order (each branch starts at its source).
    pub fn merge(branches: Vec<Operators>, op: Box<dyn Operator>) -> Operators {
        let mut merged = Operators::reading(branches.first().map_or(0, |b| b.source));
        let mut outputs = Vec::with_capacity(branches.len());
        for branch in branches {
            let offset = merged.list.len();
            let shift = |f: Feed| match f {
                Feed::Input(s) => Feed::Input(s),
                Feed::Operator(i) => Feed::Operator(i + offset),
            };
            outputs.push(shift(branch.output()));
            merged.list.extend(branch.list);
            merged.feeds.extend(
                branch
                    .feeds
                    .into_iter()
                    .map(|f| f.into_iter().map(shift).collect()),
            );
        }
        merged.list.push(op);
        merged.feeds.push(outputs);
        merged
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Box<dyn Operator>> {
        self.list.iter()
    }

    pub fn get(&self, operator: usize) -> &dyn Operator {
        self.list[operator].as_ref()
    }

    pub fn feeds(&self, operator: usize) -> &[Feed] {
        &self.feeds[operator]
    }

    /// True when some operator keeps state (a window, a join, a pattern).
    pub fn keep_state(&self) -> bool {
        self.list.iter().any(|op| op.state_kind().is_some())
    }

    /// True when every operator reads the one before it (the first, the source).
    pub fn is_chain(&self) -> bool {
        self.feeds.iter().enumerate().all(|(i, f)| {
            *f == [if i == 0 {
                Feed::Input(self.source)
            } else {
                Feed::Operator(i - 1)
            }]
        })
    }

    /// Another instance of every operator, reading as these do, for another subtask of a
    /// parallel pipeline (`watermark` is its own); `None` when one cannot run as subtasks.
    pub fn instance(&self, watermark: &WatermarkCell) -> Option<Operators> {
        Some(Operators {
            list: self
                .list
                .iter()
                .map(|op| op.instance(watermark))
                .collect::<Option<_>>()?,
            feeds: self.feeds.clone(),
            source: self.source,
        })
    }

    /// A chain cut before operator `at`: the operators before it, and those from it on, the
    /// first of which reads `input` (the rows the first part hands over); both read
    /// `watermark`. `None` unless the operators are a chain and both parts have some.
    pub fn split_at(
        &self,
        at: usize,
        input: usize,
        watermark: &WatermarkCell,
    ) -> Option<(Operators, Operators)> {
        if !self.is_chain() || at == 0 || at >= self.list.len() {
            return None;
        }
        let mut front = self.instance(watermark)?.list;
        let back = front.split_off(at);
        Some((
            Operators::chain(front, self.source),
            Operators::chain(back, input),
        ))
    }

    /// A chain cut at operator `at`, which runs in two phases: the operators before it and its
    /// local phase, then its global phase (reading `input`) and the operators after it.
    pub fn split_in_phases(
        &self,
        at: usize,
        input: usize,
        watermark: &WatermarkCell,
    ) -> Option<(Operators, Operators)> {
        if !self.is_chain() || at >= self.list.len() {
            return None;
        }
        let mut front = self.instance(watermark)?.list;
        let mut back = front.split_off(at);
        let (local, global) = back[0].two_phase()?;
        front.push(local);
        back[0] = global;
        Some((
            Operators::chain(front, self.source),
            Operators::chain(back, input),
        ))
    }

    /// `list` as a chain from `source`.
    fn chain(list: Vec<Box<dyn Operator>>, source: usize) -> Operators {
        let feeds = (0..list.len())
            .map(|i| {
                vec![match i {
                    0 => Feed::Input(source),
                    i => Feed::Operator(i - 1),
                }]
            })
            .collect();
        Operators {
            list,
            feeds,
            source,
        }
    }

    /// The first operator that cannot run as subtasks.
    pub fn first_without_instances(&self) -> Option<&dyn Operator> {
        let cell = crate::stream::new_watermark_cell();
        self.list
            .iter()
            .find(|op| op.instance(&cell).is_none())
            .map(|op| op.as_ref())
    }

    /// True when `feed`'s rows come (in part) from `source`.
    pub fn reaches(&self, feed: Feed, source: usize) -> bool {
        match feed {
            Feed::Input(s) => s == source,
            Feed::Operator(j) => self.feeds[j].iter().any(|&f| self.reaches(f, source)),
        }
    }

    /// The source columns that `column` of `feed` is, unchanged: one per source it is read
    /// from (several behind a union), none when some operator on the way computes it.
    pub fn trace(&self, feed: Feed, column: usize) -> Vec<(usize, usize)> {
        match feed {
            Feed::Input(s) => vec![(s, column)],
            Feed::Operator(j) => {
                let mut found = Vec::new();
                for (k, &f) in self.feeds[j].iter().enumerate() {
                    match self.list[j].forwards(k, column) {
                        Some(c) => found.extend(self.trace(f, c)),
                        // One branch computes it: rows from there cannot be placed by it.
                        None => return Vec::new(),
                    }
                }
                found
            }
        }
    }

    pub(crate) fn into_parts(self) -> (Vec<Box<dyn Operator>>, Vec<Vec<Feed>>) {
        (self.list, self.feeds)
    }
}

impl From<Vec<Box<dyn Operator>>> for Operators {
    /// A chain from source 0 (a pipeline of one input).
    fn from(list: Vec<Box<dyn Operator>>) -> Self {
        let mut ops = Operators::reading(0);
        for op in list {
            ops.push(op);
        }
        ops
    }
}
