//! Window operators: TUMBLE, HOP and CUMULATE aggregated by slices ([`WindowAggregate`]),
//! SESSION ([`SessionAggregate`]), the Top-N of closed windows ([`WindowTopN`]), and the
//! routing of late rows to a side output ([`LateRowSplitter`]). What a window *is* (its slices, which windows a slice belongs to)
//! lives here too, in [`WindowKind`]; the SQL layer only parses it.

mod late_rows;
mod session;
mod sliced;
mod top_n;

pub use late_rows::LateRowSplitter;
pub use session::SessionAggregate;
pub use sliced::WindowAggregate;
pub use top_n::WindowTopN;

/// Window assignment, all durations in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumble {
        size: i64,
        offset: i64,
    },
    /// Windows of `size` every `slide`.
    Hop {
        slide: i64,
        size: i64,
        offset: i64,
    },
    /// Windows growing by `step` from each multiple of `size` up to `size`.
    Cumulate {
        step: i64,
        size: i64,
        offset: i64,
    },
    Session {
        gap: i64,
    },
}

impl WindowKind {
    /// The slice length and offset of TUMBLE (size), HOP (slide) and CUMULATE (step) windows;
    /// `None` for SESSION windows, which are not sliced.
    pub fn slicing(&self) -> Option<(i64, i64)> {
        match *self {
            WindowKind::Tumble { size, offset } => Some((size, offset)),
            WindowKind::Hop { slide, offset, .. } => Some((slide, offset)),
            WindowKind::Cumulate { step, offset, .. } => Some((step, offset)),
            WindowKind::Session { .. } => None,
        }
    }

    /// Start of the slice holding event time `t` (sliced windows).
    pub fn slice_start(&self, t: i64) -> i64 {
        let (slice, offset) = self.slicing().expect("sliced window");
        t - (t - offset).rem_euclid(slice)
    }

    /// End of the last window containing the slice that starts at `s` (sliced windows).
    pub fn last_window_end(&self, s: i64) -> i64 {
        match *self {
            WindowKind::Tumble { size, .. } | WindowKind::Hop { size, .. } => s + size,
            WindowKind::Cumulate { size, offset, .. } => s - (s - offset).rem_euclid(size) + size,
            WindowKind::Session { .. } => unreachable!("sessions are not sliced"),
        }
    }
}

/// The input column a window aggregation's output `column` is, when it is a key passed on
/// unchanged (window columns and aggregates are computed).
fn forwarded_key(
    layout: &[GroupColumn],
    keys: &[std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>],
    column: usize,
) -> Option<usize> {
    match layout.get(column)? {
        GroupColumn::Key(k) => crate::operators::evaluate::plain_columns(&keys[*k..=*k])
            .first()
            .copied(),
        _ => None,
    }
}

/// Where each output column of the aggregation comes from, in GROUP BY order then aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupColumn {
    /// The i-th non-window grouping key.
    Key(usize),
    WindowStart,
    WindowEnd,
    WindowTime,
}
