//! Row patterns compiled to an automaton with priorities (a Pike VM program).
//!
//! `PATTERN (A B+? (C | D){2,3})` becomes a small program of `Row(var)` (consume one row
//! classified as `var`), `Split(preferred, other)`, `Jump` and `Accept`. Greedy quantifiers prefer
//! another repetition, reluctant ones prefer leaving; alternation prefers its left branch. That
//! preference order is exactly the SQL standard's: among all matches starting at a row, the one
//! reached through the preferred choices wins. Bounded quantifiers are unrolled, so the program
//! has no counters and its state is just an instruction index.

/// A pattern variable, an index into the pattern's variable names.
pub type VarId = u16;

/// A row pattern after parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Var(VarId),
    Concat(Vec<Pattern>),
    /// Alternatives, preferred from left to right.
    Alternation(Vec<Pattern>),
    Repeat {
        inner: Box<Pattern>,
        min: u32,
        /// `None`: unbounded.
        max: Option<u32>,
        greedy: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inst {
    /// Consume one row if it can be classified as the variable.
    Row(VarId),
    /// Continue at both targets, the first preferred.
    Split(usize, usize),
    Jump(usize),
    Accept,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Program {
    pub insts: Vec<Inst>,
}

/// Unrolling a bounded quantifier copies its sub-pattern; this bounds the program size.
const MAX_INSTRUCTIONS: usize = 10_000;

impl Pattern {
    /// Whether the pattern can match zero rows.
    pub fn nullable(&self) -> bool {
        match self {
            Pattern::Var(_) => false,
            Pattern::Concat(parts) => parts.iter().all(Pattern::nullable),
            Pattern::Alternation(alts) => alts.iter().any(Pattern::nullable),
            Pattern::Repeat { inner, min, .. } => *min == 0 || inner.nullable(),
        }
    }

    /// Whether the pattern ends in a quantifier that may take more rows (Flink rejects those;
    /// here the longest match is emitted once no further row can extend it).
    pub fn ends_greedy(&self) -> bool {
        match self {
            Pattern::Var(_) => false,
            Pattern::Concat(parts) => parts.last().is_some_and(Pattern::ends_greedy),
            Pattern::Alternation(alts) => alts.iter().any(Pattern::ends_greedy),
            Pattern::Repeat {
                min, max, greedy, ..
            } => *greedy && max.is_none_or(|m| m > *min),
        }
    }

    /// Variables that can classify the first row of a match.
    pub fn first_vars(&self, out: &mut Vec<VarId>) {
        match self {
            Pattern::Var(v) => out.push(*v),
            Pattern::Concat(parts) => {
                for p in parts {
                    p.first_vars(out);
                    if !p.nullable() {
                        break;
                    }
                }
            }
            Pattern::Alternation(alts) => alts.iter().for_each(|a| a.first_vars(out)),
            Pattern::Repeat { inner, .. } => inner.first_vars(out),
        }
    }
}

impl Program {
    pub fn compile(pattern: &Pattern) -> Result<Program, String> {
        if pattern.nullable() {
            return Err("the pattern can match zero rows; every match needs at least one row (use + instead of *, or add a variable)".to_string());
        }
        let mut p = Program { insts: Vec::new() };
        p.emit(pattern)?;
        p.insts.push(Inst::Accept);
        Ok(p)
    }

    fn push(&mut self, inst: Inst) -> Result<usize, String> {
        if self.insts.len() >= MAX_INSTRUCTIONS {
            return Err(format!(
                "the pattern is too large once its quantifiers are expanded (more than {MAX_INSTRUCTIONS} steps); use smaller bounds"
            ));
        }
        self.insts.push(inst);
        Ok(self.insts.len() - 1)
    }

    fn emit(&mut self, p: &Pattern) -> Result<(), String> {
        match p {
            Pattern::Var(v) => {
                self.push(Inst::Row(*v))?;
            }
            Pattern::Concat(parts) => {
                for part in parts {
                    self.emit(part)?;
                }
            }
            Pattern::Alternation(alts) => {
                // Split(a, next) ... a: Jump(end), next: Split(b, ...)
                let mut jumps = Vec::new();
                for (i, alt) in alts.iter().enumerate() {
                    if i + 1 < alts.len() {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.emit(alt)?;
                        jumps.push(self.push(Inst::Jump(0))?);
                        let next = self.insts.len();
                        self.insts[split] = Inst::Split(split + 1, next);
                    } else {
                        self.emit(alt)?;
                    }
                }
                let end = self.insts.len();
                for j in jumps {
                    self.insts[j] = Inst::Jump(end);
                }
            }
            Pattern::Repeat {
                inner,
                min,
                max,
                greedy,
            } => {
                for _ in 0..*min {
                    self.emit(inner)?;
                }
                match max {
                    None => {
                        // loop: Split(body, end); body; Jump(loop)
                        let split = self.push(Inst::Split(0, 0))?;
                        self.emit(inner)?;
                        self.push(Inst::Jump(split))?;
                        let end = self.insts.len();
                        self.insts[split] = self.choice(split + 1, end, *greedy);
                    }
                    Some(max) => {
                        // Optional copies nested: (inner (inner ...)?)?, each leaving to the end.
                        let mut splits = Vec::new();
                        for _ in *min..*max {
                            splits.push(self.push(Inst::Split(0, 0))?);
                            self.emit(inner)?;
                        }
                        let end = self.insts.len();
                        for s in splits {
                            self.insts[s] = self.choice(s + 1, end, *greedy);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn choice(&self, more: usize, leave: usize, greedy: bool) -> Inst {
        if greedy {
            Inst::Split(more, leave)
        } else {
            Inst::Split(leave, more)
        }
    }

    /// The `Row` and `Accept` instructions reachable from `pc` without consuming a row, in
    /// preference order, each once.
    pub fn closure(&self, pc: usize, out: &mut Vec<usize>, visited: &mut Vec<bool>) {
        visited.clear();
        visited.resize(self.insts.len(), false);
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if std::mem::replace(&mut visited[pc], true) {
                continue;
            }
            match self.insts[pc] {
                Inst::Row(_) | Inst::Accept => out.push(pc),
                Inst::Jump(t) => stack.push(t),
                Inst::Split(a, b) => {
                    stack.push(b);
                    stack.push(a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(v: VarId) -> Pattern {
        Pattern::Var(v)
    }

    fn rep(p: Pattern, min: u32, max: Option<u32>, greedy: bool) -> Pattern {
        Pattern::Repeat {
            inner: Box::new(p),
            min,
            max,
            greedy,
        }
    }

    #[test]
    fn nullable_patterns_are_rejected() {
        assert!(Program::compile(&rep(var(0), 0, None, true)).is_err());
        assert!(Program::compile(&Pattern::Concat(vec![rep(var(0), 0, Some(1), true)])).is_err());
        assert!(
            Program::compile(&Pattern::Concat(vec![var(0), rep(var(1), 0, None, true)])).is_ok()
        );
    }

    #[test]
    fn greedy_loop_prefers_another_row_and_reluctant_prefers_leaving() {
        let greedy = Program::compile(&rep(var(0), 1, None, true)).unwrap();
        assert_eq!(
            greedy.insts,
            vec![
                Inst::Row(0),
                Inst::Split(2, 4),
                Inst::Row(0),
                Inst::Jump(1),
                Inst::Accept
            ]
        );
        let reluctant = Program::compile(&rep(var(0), 1, None, false)).unwrap();
        assert_eq!(reluctant.insts[1], Inst::Split(4, 2));
        let mut out = Vec::new();
        greedy.closure(1, &mut out, &mut Vec::new());
        assert_eq!(out, vec![2, 4]);
        out.clear();
        reluctant.closure(1, &mut out, &mut Vec::new());
        assert_eq!(out, vec![4, 2]);
    }

    #[test]
    fn bounded_quantifiers_unroll() {
        // A{2,3}: A A Split A Accept
        let p = Program::compile(&rep(var(0), 2, Some(3), true)).unwrap();
        assert_eq!(
            p.insts,
            vec![
                Inst::Row(0),
                Inst::Row(0),
                Inst::Split(3, 4),
                Inst::Row(0),
                Inst::Accept
            ]
        );
        assert!(Program::compile(&rep(var(0), 1, Some(20_000), true)).is_err());
    }

    #[test]
    fn alternation_prefers_left() {
        let p = Program::compile(&Pattern::Alternation(vec![var(0), var(1), var(2)])).unwrap();
        let mut out = Vec::new();
        p.closure(0, &mut out, &mut Vec::new());
        let vars: Vec<Inst> = out.iter().map(|&pc| p.insts[pc]).collect();
        assert_eq!(vars, vec![Inst::Row(0), Inst::Row(1), Inst::Row(2)]);
    }

    #[test]
    fn greedy_end_and_first_vars() {
        let p = Pattern::Concat(vec![var(0), rep(var(1), 1, None, true)]);
        assert!(p.ends_greedy());
        let p2 = Pattern::Concat(vec![rep(var(0), 0, Some(1), true), var(1), var(2)]);
        assert!(!p2.ends_greedy());
        let mut first = Vec::new();
        p2.first_vars(&mut first);
        assert_eq!(first, vec![0, 1]);
    }
}
