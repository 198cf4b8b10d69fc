//! Matching one partition's rows, in event-time order, against a compiled pattern.
//!
//! Rows are numbered by position in the partition. Every position at which a match may start
//! opens an *attempt*: the threads of a Pike VM, kept in preference order, each an instruction
//! and the classifiers of the rows it consumed (a shared tree, `arena`). When a thread accepts,
//! the threads after it can only lead to less preferred matches and are dropped; the ones before
//! it may still find a preferred match, so the attempt's match is final only when no thread is
//! left. Attempts are resolved oldest first (the SQL standard's leftmost rule): a match is
//! emitted, AFTER MATCH SKIP decides where the next match may start, and attempts starting
//! before that are discarded.
//!
//! A thread dies when its next row does not fit, when `WITHIN` expires (a row at or after
//! `start + within`, or a watermark saying no such row can come), or at the end of input. That is
//! also how a pattern ending in a greedy quantifier (`A B+`) finishes: its longest match is
//! emitted once the next row does not fit or no further row can arrive in time.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::nfa::{Inst, Program, VarId};
use crate::stream::JobError;

/// AFTER MATCH SKIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    PastLastRow,
    ToNextRow,
    ToFirst(VarId),
    ToLast(VarId),
}

/// What every partition of one MATCH_RECOGNIZE shares.
pub struct MatchRules {
    pub program: Program,
    pub skip: Skip,
    /// `WITHIN`, in milliseconds.
    pub within: Option<i64>,
    /// Per variable: its condition reads earlier rows of the match (FIRST, LAST, aggregates,
    /// other variables), so it must be evaluated per thread with the thread's history.
    pub needs_history: Vec<bool>,
    /// Variables that can classify a match's first row.
    pub first_vars: Vec<VarId>,
}

impl MatchRules {
    /// Threads at the same instruction can be merged (keeping the preferred one) only when no
    /// condition depends on how the rows before were classified.
    fn merges_threads(&self) -> bool {
        !self.needs_history.iter().any(|&h| h)
    }
}

/// A completed match: consecutive rows of the partition from `start`, with their variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub start: u64,
    pub classifiers: Vec<VarId>,
    /// 1 for the partition's first match, then 2, 3, ...
    pub number: u64,
}

const NO_NODE: u32 = u32::MAX;

/// Above this many live threads one attempt is considered runaway (ambiguous pattern with
/// history-dependent conditions) and the job fails instead of exhausting memory.
const MAX_THREADS: usize = 100_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Link {
    parent: u32,
    var: VarId,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Thread {
    pc: u32,
    /// The last row's link in the arena (`NO_NODE` before the first row).
    node: u32,
    /// Rows consumed.
    len: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Attempt {
    start: u64,
    start_ts: i64,
    threads: Vec<Thread>,
    arena: Vec<Link>,
    /// The preferred accepted match so far: its last row's link and its length.
    accepted: Option<(u32, u64)>,
}

impl Attempt {
    fn history(&self, mut node: u32) -> Vec<VarId> {
        let mut out = Vec::new();
        while node != NO_NODE {
            let link = &self.arena[node as usize];
            out.push(link.var);
            node = link.parent;
        }
        out.reverse();
        out
    }
}

/// Pattern matching state of one partition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartitionMatcher {
    attempts: VecDeque<Attempt>,
    /// The first position where a new match may start (moved by AFTER MATCH SKIP).
    next_start: u64,
    /// Position of the next row.
    next_pos: u64,
    /// Matches emitted so far (MATCH_NUMBER of the last one).
    matches: u64,
}

/// Buffers reused from row to row (matching allocates nothing per row in the common case).
#[derive(Default)]
pub struct Scratch {
    cache: Vec<u8>,
    closure: Vec<usize>,
    visited: Vec<bool>,
    seen: Vec<bool>,
}

/// Per-row cache of conditions that do not depend on a thread's history.
struct RowTests<'a, F> {
    cache: &'a mut Vec<u8>,
    rules: &'a MatchRules,
    test: F,
}

impl<F> RowTests<'_, F>
where
    F: FnMut(VarId, Option<&[VarId]>) -> Result<bool, JobError>,
{
    fn test(&mut self, var: VarId, attempt: &Attempt, thread: Thread) -> Result<bool, JobError> {
        if self.rules.needs_history[var as usize] {
            let history = attempt.history(thread.node);
            return (self.test)(var, Some(&history));
        }
        match self.cache[var as usize] {
            1 => Ok(false),
            2 => Ok(true),
            _ => {
                let r = (self.test)(var, None)?;
                self.cache[var as usize] = if r { 2 } else { 1 };
                Ok(r)
            }
        }
    }
}

impl PartitionMatcher {
    /// Position of the next row to be pushed.
    pub fn next_position(&self) -> u64 {
        self.next_pos
    }

    /// Matches emitted so far.
    pub fn match_count(&self) -> u64 {
        self.matches
    }

    /// The oldest position a future match can still contain: rows before it can be freed
    /// (apart from what `PREV` needs).
    pub fn oldest_needed(&self) -> u64 {
        self.attempts.front().map_or(self.next_pos, |a| a.start)
    }

    /// Whether any match is still in progress.
    pub fn is_idle(&self) -> bool {
        self.attempts.is_empty()
    }

    /// Feeds the partition's next row (at event time `ts`). `test(var, history)` says whether
    /// the row fits `var`; `history` (the classifiers of the thread's rows before this one) is
    /// given for variables whose condition needs it. Completed matches are appended to `out`.
    pub fn push_row(
        &mut self,
        rules: &MatchRules,
        scratch: &mut Scratch,
        ts: i64,
        test: impl FnMut(VarId, Option<&[VarId]>) -> Result<bool, JobError>,
        out: &mut Vec<Match>,
    ) -> Result<(), JobError> {
        let pos = self.next_pos;
        self.next_pos += 1;
        let Scratch {
            cache,
            closure,
            visited,
            seen,
        } = scratch;
        cache.clear();
        cache.resize(rules.needs_history.len(), 0);
        let mut tests = RowTests { cache, rules, test };
        for attempt in self.attempts.iter_mut() {
            if rules.within.is_some_and(|w| ts - attempt.start_ts >= w) {
                attempt.threads.clear();
            }
            step(rules, attempt, &mut tests, closure, visited, seen)?;
        }
        if pos >= self.next_start && self.may_start(rules, &mut tests)? {
            let mut attempt = Attempt {
                start: pos,
                start_ts: ts,
                threads: Vec::new(),
                arena: Vec::new(),
                accepted: None,
            };
            rules.program.closure(0, closure, visited);
            attempt.threads.extend(closure.drain(..).map(|pc| Thread {
                pc: pc as u32,
                node: NO_NODE,
                len: 0,
            }));
            step(rules, &mut attempt, &mut tests, closure, visited, seen)?;
            if !attempt.threads.is_empty() || attempt.accepted.is_some() {
                self.attempts.push_back(attempt);
            }
        }
        self.resolve(rules, out);
        Ok(())
    }

    /// Cheap pre-check before opening an attempt: can some first variable take this row?
    fn may_start<F>(
        &self,
        rules: &MatchRules,
        tests: &mut RowTests<'_, F>,
    ) -> Result<bool, JobError>
    where
        F: FnMut(VarId, Option<&[VarId]>) -> Result<bool, JobError>,
    {
        for &v in &rules.first_vars {
            if rules.needs_history[v as usize] || tests.test(v, &EMPTY_ATTEMPT, START)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Event time has reached `watermark`: no row at or before it can still come, so attempts
    /// whose `WITHIN` ends by then cannot grow.
    pub fn advance_time(&mut self, rules: &MatchRules, watermark: i64, out: &mut Vec<Match>) {
        if let Some(w) = rules.within {
            for a in self.attempts.iter_mut() {
                if watermark.saturating_add(1) - a.start_ts >= w {
                    a.threads.clear();
                }
            }
            self.resolve(rules, out);
        }
    }

    /// End of input: every attempt ends with its best match so far.
    pub fn finish(&mut self, rules: &MatchRules, out: &mut Vec<Match>) {
        for a in self.attempts.iter_mut() {
            a.threads.clear();
        }
        self.resolve(rules, out);
    }

    /// Emits finished attempts, oldest first, applying AFTER MATCH SKIP.
    fn resolve(&mut self, rules: &MatchRules, out: &mut Vec<Match>) {
        while self.attempts.front().is_some_and(|a| a.threads.is_empty()) {
            let a = self.attempts.pop_front().expect("checked non-empty");
            let Some((node, len)) = a.accepted else {
                continue;
            };
            let classifiers = a.history(node);
            self.matches += 1;
            let find = |first: bool, v: VarId| {
                let mut at = classifiers.iter().enumerate().filter(|(_, c)| **c == v);
                let i = if first { at.next() } else { at.next_back() };
                i.map(|(i, _)| a.start + i as u64)
            };
            let next = match rules.skip {
                Skip::PastLastRow => a.start + len,
                Skip::ToNextRow => a.start + 1,
                Skip::ToFirst(v) => find(true, v).unwrap_or(a.start + 1),
                Skip::ToLast(v) => find(false, v).unwrap_or(a.start + 1),
            };
            // Skipping to the match's own first row would find the same match again.
            self.next_start = next.max(a.start + 1);
            let next_start = self.next_start;
            self.attempts.retain(|x| x.start >= next_start);
            out.push(Match {
                start: a.start,
                classifiers,
                number: self.matches,
            });
        }
    }
}

static EMPTY_ATTEMPT: Attempt = Attempt {
    start: 0,
    start_ts: 0,
    threads: Vec::new(),
    arena: Vec::new(),
    accepted: None,
};
const START: Thread = Thread {
    pc: 0,
    node: NO_NODE,
    len: 0,
};

/// Advances every thread of `attempt` over the current row, in preference order.
fn step<F>(
    rules: &MatchRules,
    attempt: &mut Attempt,
    tests: &mut RowTests<'_, F>,
    closure: &mut Vec<usize>,
    visited: &mut Vec<bool>,
    seen: &mut Vec<bool>,
) -> Result<(), JobError>
where
    F: FnMut(VarId, Option<&[VarId]>) -> Result<bool, JobError>,
{
    if attempt.threads.is_empty() {
        return Ok(());
    }
    let program = &rules.program;
    let merge = rules.merges_threads();
    seen.clear();
    if merge {
        seen.resize(program.insts.len(), false);
    }
    let old = std::mem::take(&mut attempt.threads);
    let mut next = Vec::with_capacity(old.len());
    'threads: for t in old {
        let Inst::Row(var) = program.insts[t.pc as usize] else {
            unreachable!("threads wait at Row instructions")
        };
        if !tests.test(var, attempt, t)? {
            continue;
        }
        attempt.arena.push(Link {
            parent: t.node,
            var,
        });
        let node = (attempt.arena.len() - 1) as u32;
        program.closure(t.pc as usize + 1, closure, visited);
        for pc in closure.drain(..) {
            match program.insts[pc] {
                Inst::Accept => {
                    // Everything less preferred than this match is dropped.
                    attempt.accepted = Some((node, t.len as u64 + 1));
                    break 'threads;
                }
                _ if merge && std::mem::replace(&mut seen[pc], true) => {}
                _ => next.push(Thread {
                    pc: pc as u32,
                    node,
                    len: t.len + 1,
                }),
            }
        }
    }
    closure.clear();
    if next.len() > MAX_THREADS {
        return Err(JobError::internal(format!(
            "MATCH_RECOGNIZE: one match attempt has more than {MAX_THREADS} alternatives in flight; the pattern is too ambiguous for its DEFINE conditions (add WITHIN or make the conditions exclusive)"
        )));
    }
    attempt.threads = next;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::nfa::Pattern;
    use super::*;

    fn var(c: char) -> Pattern {
        Pattern::Var((c as u8 - b'A') as VarId)
    }
    fn rep(p: Pattern, min: u32, max: Option<u32>, greedy: bool) -> Pattern {
        Pattern::Repeat {
            inner: Box::new(p),
            min,
            max,
            greedy,
        }
    }
    fn seq(p: Vec<Pattern>) -> Pattern {
        Pattern::Concat(p)
    }

    fn rules(pattern: &Pattern, skip: Skip, within: Option<i64>) -> MatchRules {
        let mut first_vars = Vec::new();
        pattern.first_vars(&mut first_vars);
        MatchRules {
            program: Program::compile(pattern).unwrap(),
            skip,
            within,
            needs_history: vec![false; 26],
            first_vars,
        }
    }

    /// Rows are space-separated sets of the variables they satisfy ("ab" fits A and B; "-" fits
    /// none); row i has event time i. Matches print as "start:ABC".
    fn run(r: &MatchRules, rows: &str, finish: bool) -> Vec<String> {
        let rows: Vec<&str> = rows.split_whitespace().collect();
        let mut m = PartitionMatcher::default();
        let mut out = Vec::new();
        let mut scratch = Scratch::default();
        for (i, row) in rows.iter().enumerate() {
            m.push_row(
                r,
                &mut scratch,
                i as i64,
                |v, _| Ok(row.contains((b'a' + v as u8) as char)),
                &mut out,
            )
            .unwrap();
        }
        if finish {
            m.finish(r, &mut out);
        }
        out.iter()
            .map(|m| {
                let s: String = m
                    .classifiers
                    .iter()
                    .map(|&v| (b'A' + v as u8) as char)
                    .collect();
                format!("{}:{s}", m.start)
            })
            .collect()
    }

    #[test]
    fn a_b_plus_c_past_last_row() {
        let r = rules(
            &seq(vec![var('A'), rep(var('B'), 1, None, true), var('C')]),
            Skip::PastLastRow,
            None,
        );
        assert_eq!(
            run(&r, "a b b c a b c - a c", true),
            vec!["0:ABBC", "4:ABC"]
        );
    }

    #[test]
    fn greedy_and_reluctant_plus() {
        // A B+ C where rows fit both B and C: greedy takes all it can, reluctant stops early.
        let greedy = rules(
            &seq(vec![var('A'), rep(var('B'), 1, None, true), var('C')]),
            Skip::PastLastRow,
            None,
        );
        assert_eq!(run(&greedy, "a bc bc bc -", true), vec!["0:ABBC"]);
        let reluctant = rules(
            &seq(vec![var('A'), rep(var('B'), 1, None, false), var('C')]),
            Skip::PastLastRow,
            None,
        );
        assert_eq!(run(&reluctant, "a bc bc bc -", true), vec!["0:ABC"]);
    }

    #[test]
    fn star_question_and_ranges() {
        let star = rules(
            &seq(vec![var('A'), rep(var('B'), 0, None, true), var('C')]),
            Skip::PastLastRow,
            None,
        );
        assert_eq!(run(&star, "a c a b b c", true), vec!["0:AC", "2:ABBC"]);
        let star_reluctant = rules(
            &seq(vec![var('A'), rep(var('B'), 0, None, false), var('C')]),
            Skip::PastLastRow,
            None,
        );
        assert_eq!(run(&star_reluctant, "a bc c", true), vec!["0:AC"]);
        let opt = rules(
            &seq(vec![var('A'), rep(var('B'), 0, Some(1), true), var('C')]),
            Skip::PastLastRow,
            None,
        );
        assert_eq!(run(&opt, "a b c a c a b b c", true), vec!["0:ABC", "3:AC"]);
        let opt_reluctant = rules(
            &seq(vec![var('A'), rep(var('B'), 0, Some(1), false), var('C')]),
            Skip::PastLastRow,
            None,
        );
        assert_eq!(run(&opt_reluctant, "a bc c", true), vec!["0:AC"]);
        let exactly = rules(
            &seq(vec![var('A'), rep(var('B'), 2, Some(2), true)]),
            Skip::PastLastRow,
            None,
        );
        assert_eq!(run(&exactly, "a b a b b b", true), vec!["2:ABB"]);
        let at_least = rules(
            &seq(vec![rep(var('B'), 2, None, true), var('C')]),
            Skip::PastLastRow,
            None,
        );
        assert_eq!(run(&at_least, "b c b b b c", true), vec!["2:BBBC"]);
        let at_most = rules(
            &seq(vec![var('A'), rep(var('B'), 0, Some(2), true), var('C')]),
            Skip::PastLastRow,
            None,
        );
        assert_eq!(run(&at_most, "a b b b c a b b c", true), vec!["5:ABBC"]);
        let range_greedy = rules(
            &seq(vec![var('A'), rep(var('B'), 1, Some(3), true)]),
            Skip::PastLastRow,
            None,
        );
        assert_eq!(run(&range_greedy, "a b b b b", true), vec!["0:ABBB"]);
        let range_reluctant = rules(
            &seq(vec![var('A'), rep(var('B'), 1, Some(3), false)]),
            Skip::PastLastRow,
            None,
        );
        assert_eq!(run(&range_reluctant, "a b b b b", true), vec!["0:AB"]);
    }

    #[test]
    fn skip_modes() {
        let p = seq(vec![var('A'), rep(var('B'), 1, None, true), var('C')]);
        // rows 0..: a ab ab c  — both row 0 and row 1 can start a match.
        let rows = "a ab b c";
        let past = rules(&p, Skip::PastLastRow, None);
        assert_eq!(run(&past, rows, true), vec!["0:ABBC"]);
        let next = rules(&p, Skip::ToNextRow, None);
        assert_eq!(run(&next, rows, true), vec!["0:ABBC", "1:ABC"]);
        // A B C where the B row could also start a match: only TO LAST B (and TO NEXT ROW)
        // find the second match.
        let abc = seq(vec![var('A'), var('B'), var('C')]);
        let rows = "a ab bc c";
        assert_eq!(
            run(&rules(&abc, Skip::PastLastRow, None), rows, true),
            vec!["0:ABC"]
        );
        assert_eq!(
            run(&rules(&abc, Skip::ToLast(1), None), rows, true),
            vec!["0:ABC", "1:ABC"]
        );
        assert_eq!(
            run(&rules(&abc, Skip::ToFirst(2), None), rows, true),
            vec!["0:ABC"]
        );
        let to_first_b = rules(&p, Skip::ToFirst(1), None);
        assert_eq!(
            run(&to_first_b, "a ab ab b c", true),
            vec!["0:ABBBC", "1:ABBC", "2:ABC"]
        );
        // Skipping to the first row of the match itself moves on by one row instead of looping.
        let to_first_a = rules(&p, Skip::ToFirst(0), None);
        assert_eq!(run(&to_first_a, "a ab b c", true), vec!["0:ABBC", "1:ABC"]);
    }

    #[test]
    fn within_expires_attempts() {
        let p = seq(vec![var('A'), rep(var('B'), 1, None, true), var('C')]);
        let r = rules(&p, Skip::PastLastRow, Some(3));
        // Row times are positions: the first attempt (start 0) would end at row 4, 4 - 0 >= 3.
        assert_eq!(run(&r, "a b b b c a b c", true), vec!["5:ABC"]);
        // Time alone expires an attempt: a watermark past start + within resolves it.
        let greedy_end = rules(
            &seq(vec![var('A'), rep(var('B'), 1, None, true)]),
            Skip::PastLastRow,
            Some(10),
        );
        let mut m = PartitionMatcher::default();
        let mut out = Vec::new();
        for row in ["a", "b", "b"] {
            m.push_row(
                &greedy_end,
                &mut Scratch::default(),
                0,
                |v, _| Ok(row.contains((b'a' + v as u8) as char)),
                &mut out,
            )
            .unwrap();
        }
        m.advance_time(&greedy_end, 8, &mut out);
        assert!(out.is_empty(), "a row at 9 could still extend the match");
        m.advance_time(&greedy_end, 9, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].classifiers, vec![0, 1, 1]);
        assert!(m.is_idle());
    }

    #[test]
    fn greedy_end_waits_for_a_row_that_does_not_fit() {
        let r = rules(
            &seq(vec![var('A'), rep(var('B'), 1, None, true)]),
            Skip::PastLastRow,
            None,
        );
        assert!(run(&r, "a b b", false).is_empty());
        assert_eq!(run(&r, "a b b -", false), vec!["0:ABB"]);
        assert_eq!(run(&r, "a b b", true), vec!["0:ABB"]);
    }

    #[test]
    fn alternation_and_groups() {
        // (A | B) C: left alternative preferred.
        let alt = rules(
            &seq(vec![
                Pattern::Alternation(vec![var('A'), var('B')]),
                var('C'),
            ]),
            Skip::PastLastRow,
            None,
        );
        assert_eq!(run(&alt, "ab c b c", true), vec!["0:AC", "2:BC"]);
        // (A B)+ C
        let group = rules(
            &seq(vec![
                rep(seq(vec![var('A'), var('B')]), 1, None, true),
                var('C'),
            ]),
            Skip::PastLastRow,
            None,
        );
        assert_eq!(
            run(&group, "a b a b c a c a b c", true),
            vec!["0:ABABC", "7:ABC"]
        );
        // (A | B){2} C
        let alt_rep = rules(
            &seq(vec![
                rep(
                    Pattern::Alternation(vec![var('A'), var('B')]),
                    2,
                    Some(2),
                    true,
                ),
                var('C'),
            ]),
            Skip::PastLastRow,
            None,
        );
        assert_eq!(run(&alt_rep, "b a c a c", true), vec!["0:BAC"]);
    }

    #[test]
    fn leftmost_match_wins_and_later_completions_wait() {
        // A B* C with skip past last row: the attempt at 0 is still open when the one at 2
        // completes; its own match, once found, discards the later one.
        let r = rules(
            &seq(vec![var('A'), rep(var('B'), 0, None, true), var('C')]),
            Skip::PastLastRow,
            None,
        );
        assert_eq!(run(&r, "a b ab c", true), vec!["0:ABBC"]);
    }

    #[test]
    fn history_dependent_conditions_get_the_threads_rows() {
        // B fits only while fewer than 2 B rows are in the thread: A B{1,} C sees at most 2 Bs.
        let p = seq(vec![var('A'), rep(var('B'), 1, None, true), var('C')]);
        let mut r = rules(&p, Skip::PastLastRow, None);
        r.needs_history[1] = true;
        let rows = ["a", "b", "b", "bc"];
        let mut m = PartitionMatcher::default();
        let mut out = Vec::new();
        for row in rows {
            m.push_row(
                &r,
                &mut Scratch::default(),
                0,
                |v, history| {
                    if v == 1 {
                        let h = history.expect("B needs history");
                        return Ok(row.contains('b') && h.iter().filter(|&&x| x == 1).count() < 2);
                    }
                    Ok(row.contains((b'a' + v as u8) as char))
                },
                &mut out,
            )
            .unwrap();
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].classifiers, vec![0, 1, 1, 2]);
    }
}
