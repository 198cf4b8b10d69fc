//! MATCH_RECOGNIZE: row pattern recognition over event time.

pub mod matcher;
pub mod nfa;
