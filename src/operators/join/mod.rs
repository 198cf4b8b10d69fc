//! Joins: the lookup join of a stream with a bounded table ([`LookupJoin`]), and joins of two
//! streams of one pipeline — the interval join ([`IntervalJoin`]), the window join
//! ([`WindowJoin`]) and the event-time temporal join ([`TemporalJoin`]).

mod interval;
mod lookup;
mod padded;
mod regular;
mod temporal;
mod window;

pub use interval::{IntervalJoin, JoinKind, JoinSide};
pub use lookup::{LoadTable, LookupJoin, LookupJoinSpec, LookupTable};
pub use regular::{RegularJoin, RegularSide};
pub use temporal::TemporalJoin;
pub use window::{WindowJoin, WindowJoinKind, WindowSide};

use std::sync::Arc;

use datafusion::physical_expr::PhysicalExpr;

/// The state key of a two-input join for its `input`-th side: of the equality pairs, those
/// plain columns on both sides, in the same order on both — so equal keys hash alike.
fn paired_key_columns(
    left: &[Arc<dyn PhysicalExpr>],
    right: &[Arc<dyn PhysicalExpr>],
    input: usize,
) -> Vec<usize> {
    use crate::operators::evaluate::plain_columns;
    left.iter()
        .zip(right)
        .filter_map(|(l, r)| {
            let l = plain_columns(std::slice::from_ref(l)).first().copied()?;
            let r = plain_columns(std::slice::from_ref(r)).first().copied()?;
            Some(if input == 0 { l } else { r })
        })
        .collect()
}
