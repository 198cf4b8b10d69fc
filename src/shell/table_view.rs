//! Flink's `table` result mode: the query's result on a full screen of its own (the terminal's
//! alternate screen), redrawn in place as rows come, scrollable while they do. At most
//! `sql-client.execution.max-table-result.rows` rows are kept, the oldest dropped first; when the
//! view is left, the screen is as it was and one line says what was received.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::style::Print;
use crossterm::terminal::{self, ClearType};
use crossterm::{cursor, queue};
use tokio::sync::mpsc;

use super::results::{Rows, Tableau};
use crate::stream::changelog::RowKind;

/// How often the screen is redrawn at most while rows come.
const REFRESH: Duration = Duration::from_millis(200);

/// What the view holds and where it looks.
struct TableView {
    layout: Option<Tableau>,
    /// The header's three lines (rule, names, rule).
    header: Vec<String>,
    /// The kept rows, formatted, oldest first.
    rows: VecDeque<String>,
    max_rows: usize,
    received: u64,
    dropped: u64,
    /// The first row shown.
    top: usize,
    /// Columns scrolled off to the left.
    left: usize,
    /// Showing the newest rows as they come (End), until the user scrolls up.
    follow: bool,
    /// `running`, `finished`, `stopped` or the query's error.
    state: String,
}

/// A key's meaning in the view.
#[derive(Debug, PartialEq)]
enum Action {
    Quit,
    Up(usize),
    Down(usize),
    PageUp,
    PageDown,
    First,
    Last,
    Left,
    Right,
    None,
}

fn action(key: KeyEvent) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Char('c') if ctrl => Action::Quit,
        KeyCode::Char('q' | 'Q') | KeyCode::Esc => Action::Quit,
        KeyCode::Up | KeyCode::Char('k') => Action::Up(1),
        KeyCode::Down | KeyCode::Char('j') => Action::Down(1),
        KeyCode::PageUp | KeyCode::Char('p') => Action::PageUp,
        KeyCode::PageDown | KeyCode::Char('n' | ' ') => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::First,
        KeyCode::End | KeyCode::Char('G' | 'l') => Action::Last,
        KeyCode::Left | KeyCode::Char('h') => Action::Left,
        KeyCode::Right => Action::Right,
        _ => Action::None,
    }
}

impl TableView {
    fn new(max_rows: usize) -> Self {
        TableView {
            layout: None,
            header: Vec::new(),
            rows: VecDeque::new(),
            max_rows: max_rows.max(1),
            received: 0,
            dropped: 0,
            top: 0,
            left: 0,
            follow: true,
            state: "running".to_string(),
        }
    }

    fn set_layout(&mut self, layout: Tableau) {
        self.header = layout.header().lines().map(str::to_string).collect();
        self.layout = Some(layout);
    }

    /// Applies rows as they come: an insert or the new row of an update is added, the old row
    /// of an update or a deleted row taken out (the result as it stands, as Flink's table mode).
    fn push(&mut self, lines: Vec<(RowKind, String)>) {
        for (kind, line) in lines {
            self.received += 1;
            if kind.is_retraction() {
                if let Some(at) = self.rows.iter().rposition(|r| *r == line) {
                    self.rows.remove(at);
                }
                continue;
            }
            self.rows.push_back(line);
            if self.rows.len() > self.max_rows {
                self.rows.pop_front();
                self.dropped += 1;
                self.top = self.top.saturating_sub(1);
            }
        }
        self.top = self.top.min(self.rows.len());
    }

    /// Applies a key, for a screen showing `page` rows.
    fn apply(&mut self, action: &Action, page: usize) {
        let last_top = self.rows.len().saturating_sub(page);
        let top = match action {
            Action::Up(n) => self.top.saturating_sub(*n),
            Action::Down(n) => self.top + n,
            Action::PageUp => self.top.saturating_sub(page),
            Action::PageDown => self.top + page,
            Action::First => 0,
            Action::Last => last_top,
            Action::Left => {
                self.left = self.left.saturating_sub(8);
                return;
            }
            Action::Right => {
                self.left += 8;
                return;
            }
            Action::Quit | Action::None => return,
        };
        self.top = top.min(last_top);
        self.follow = self.top == last_top;
    }

    /// The screen's lines for a `width` × `height` terminal.
    fn screen(&mut self, width: usize, height: usize) -> Vec<String> {
        let page = height.saturating_sub(6).max(1);
        if self.follow {
            self.top = self.rows.len().saturating_sub(page);
        }
        let cut = |line: &str| -> String { line.chars().skip(self.left).take(width).collect() };
        let mut lines = vec![cut(&format!(
            "Sluice query result (table mode) · {} · {}",
            self.state,
            chrono::Local::now().format("%H:%M:%S")
        ))];
        lines.extend(self.header.iter().map(|l| cut(l)));
        let shown: Vec<String> = self
            .rows
            .iter()
            .skip(self.top)
            .take(page)
            .map(|l| cut(l))
            .collect();
        let (first, last) = (self.top + 1, self.top + shown.len());
        lines.extend(shown);
        lines.resize(height.saturating_sub(2).max(lines.len()), String::new());
        let kept = if self.dropped > 0 {
            format!(
                " ({} received; the oldest {} dropped, max-table-result.rows = {})",
                self.received, self.dropped, self.max_rows
            )
        } else {
            String::new()
        };
        let position = if self.rows.is_empty() {
            "no rows yet".to_string()
        } else {
            format!("rows {first}-{last} of {}{kept}", self.rows.len())
        };
        let follow = if self.follow {
            " · following new rows"
        } else {
            ""
        };
        lines.push(cut(&format!("{position}{follow}")));
        lines.push(cut(
            "Q quit · ↑↓ row · PgUp PgDn page · Home first · End last (follow) · ←→ columns",
        ));
        lines
    }
}

/// The terminal in the view's state (raw, alternate screen, no cursor) while this lives.
struct Screen;

impl Screen {
    fn enter() -> std::io::Result<Screen> {
        terminal::enable_raw_mode()?;
        let mut out = std::io::stdout();
        queue!(out, terminal::EnterAlternateScreen, cursor::Hide)?;
        out.flush()?;
        Ok(Screen)
    }

    fn draw(&self, lines: &[String]) -> std::io::Result<()> {
        let mut out = std::io::stdout();
        for (y, line) in lines.iter().enumerate() {
            let y = u16::try_from(y).unwrap_or(u16::MAX);
            queue!(
                out,
                cursor::MoveTo(0, y),
                Print(line),
                terminal::Clear(ClearType::UntilNewLine)
            )?;
        }
        out.flush()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let mut out = std::io::stdout();
        let _ = queue!(out, cursor::Show, terminal::LeaveAlternateScreen);
        let _ = out.flush();
        let _ = terminal::disable_raw_mode();
    }
}

/// Keys read on a thread of their own (the terminal's reads block) until `done`.
fn read_keys(done: Arc<AtomicBool>) -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while !done.load(Ordering::Relaxed) {
            match event::poll(Duration::from_millis(50)) {
                Ok(true) => match event::read() {
                    Ok(e) => {
                        if tx.send(e).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                },
                Ok(false) => {}
                Err(_) => break,
            }
        }
    });
    rx
}

/// Shows the query's rows in the table view until Q (or Ctrl-C); a query still running then
/// stops. Returns the line to print once the screen is back.
pub async fn show_table(
    mut rows: Rows,
    max_rows: usize,
    max_width: usize,
) -> Result<String, String> {
    let mut view = TableView::new(max_rows);
    let done = Arc::new(AtomicBool::new(false));
    let screen = Screen::enter().map_err(|e| e.to_string())?;
    let mut keys = read_keys(done.clone());
    let mut tick = tokio::time::interval(REFRESH);
    let (mut ended, mut dirty, mut failure) = (false, true, None);
    loop {
        if view.layout.is_none()
            && let Some(schema) = rows.schema()
        {
            view.set_layout(Tableau::new(&schema, max_width).without_op());
        }
        tokio::select! {
            batch = rows.next(), if !ended => {
                match batch {
                    Ok(Some(batch)) => {
                        if view.layout.is_none() {
                            view.set_layout(Tableau::new(&batch.schema(), max_width).without_op());
                        }
                        let layout = view.layout.as_mut().expect("set above");
                        let lines = layout.lines(&batch).map_err(|e| e.to_string())?;
                        view.push(lines);
                    }
                    Ok(None) => {
                        ended = true;
                        view.state = "finished: Q to return".to_string();
                    }
                    Err(e) => {
                        ended = true;
                        view.state = format!("failed: {e}");
                        failure = Some(e);
                    }
                }
                dirty = true;
            }
            key = keys.recv() => {
                let (width, height) = terminal::size().unwrap_or((80, 24));
                let page = usize::from(height).saturating_sub(6).max(1);
                match key {
                    Some(Event::Key(key)) => {
                        let a = action(key);
                        if a == Action::Quit {
                            break;
                        }
                        view.apply(&a, page);
                    }
                    Some(_) => {}
                    None => break,
                }
                let lines = view.screen(usize::from(width), usize::from(height));
                screen.draw(&lines).map_err(|e| e.to_string())?;
                dirty = false;
            }
            _ = tick.tick(), if dirty => {
                let (width, height) = terminal::size().unwrap_or((80, 24));
                let lines = view.screen(usize::from(width), usize::from(height));
                screen.draw(&lines).map_err(|e| e.to_string())?;
                dirty = false;
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    drop(screen);
    let stopped = !ended;
    if stopped {
        rows.stop();
        while let Ok(Some(_)) = rows.next().await {}
    }
    let result = rows.finish().await;
    if let Some(e) = failure.or(result.err()) {
        return Err(e);
    }
    let how = if stopped { "stopped" } else { "finished" };
    Ok(format!(
        "Query {how}: received a total of {} rows, the view kept the last {}.",
        view.received,
        view.rows.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view_with(rows: usize, max_rows: usize) -> TableView {
        let mut v = TableView::new(max_rows);
        v.header = vec!["+---+".into(), "| a |".into(), "+---+".into()];
        v.push(
            (1..=rows)
                .map(|i| (RowKind::Insert, format!("| {i} |")))
                .collect(),
        );
        v
    }

    #[test]
    fn follows_new_rows_until_scrolled_and_keeps_the_newest_rows() {
        // 10 rows high: 4 rows shown.
        let mut v = view_with(10, 100);
        let screen = v.screen(40, 10);
        assert_eq!(screen.len(), 10);
        assert_eq!(screen[4], "| 7 |", "{screen:#?}");
        assert_eq!(screen[7], "| 10 |");
        assert!(
            screen[8].starts_with("rows 7-10 of 10 · following"),
            "{}",
            screen[8]
        );
        v.apply(&Action::First, 4);
        v.push(vec![(RowKind::Insert, "| 11 |".into())]);
        let screen = v.screen(40, 10);
        assert_eq!(screen[4], "| 1 |", "scrolled up: stays put");
        assert_eq!(screen[8], "rows 1-4 of 11");
        v.apply(&Action::PageDown, 4);
        v.apply(&Action::Down(1), 4);
        assert_eq!(v.screen(40, 10)[4], "| 6 |");
        v.apply(&Action::Last, 4);
        assert!(v.follow);
        assert_eq!(v.screen(40, 10)[7], "| 11 |");

        let mut small = view_with(10, 3);
        let screen = small.screen(200, 10);
        assert_eq!(screen[4], "| 8 |");
        assert_eq!(
            screen[8],
            "rows 1-3 of 3 (10 received; the oldest 7 dropped, max-table-result.rows = 3) · following new rows"
        );
        // Narrow: lines are cut; ←→ scroll sideways.
        assert_eq!(small.screen(3, 10)[4], "| 8");
        small.apply(&Action::Right, 4);
        assert_eq!(small.screen(40, 10)[4], "");
    }

    #[test]
    fn an_updating_result_shows_as_it_stands() {
        let mut v = view_with(0, 100);
        let row = |kind, text: &str| (kind, text.to_string());
        v.push(vec![
            row(RowKind::Insert, "| a 1 |"),
            row(RowKind::Insert, "| b 1 |"),
            row(RowKind::UpdateBefore, "| a 1 |"),
            row(RowKind::UpdateAfter, "| a 2 |"),
            row(RowKind::Delete, "| b 1 |"),
        ]);
        let screen = v.screen(40, 10);
        assert_eq!(screen[4], "| a 2 |");
        assert_eq!(screen[5], "");
        assert!(screen[8].starts_with("rows 1-1 of 1"), "{}", screen[8]);
    }

    #[test]
    fn keys_mean_what_flinks_table_view_and_less_users_expect() {
        let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
        assert_eq!(action(key(KeyCode::Char('q'))), Action::Quit);
        assert_eq!(
            action(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Action::Quit
        );
        assert_eq!(action(key(KeyCode::PageDown)), Action::PageDown);
        assert_eq!(action(key(KeyCode::End)), Action::Last);
        assert_eq!(action(key(KeyCode::Char('x'))), Action::None);
    }
}
