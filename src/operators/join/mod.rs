//! Joins. Today: the lookup join of a stream with a bounded table ([`LookupJoin`]).

mod lookup;

pub use lookup::{LoadTable, LookupJoin, LookupJoinSpec, LookupTable};
