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
