//! Joins: the lookup join of a stream with a bounded table ([`LookupJoin`]), and joins of two
//! streams of one pipeline — the interval join ([`IntervalJoin`]) and the window join
//! ([`WindowJoin`]).

mod interval;
mod lookup;
mod padded;
mod window;

pub use interval::{IntervalJoin, JoinKind, JoinSide};
pub use lookup::{LoadTable, LookupJoin, LookupJoinSpec, LookupTable};
pub use window::{WindowJoin, WindowJoinKind, WindowSide};
