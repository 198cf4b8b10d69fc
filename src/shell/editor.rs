//! The shell's line editor (reedline): a statement ends at a top-level `;` (strings, comments and
//! statement sets understood), SQL keywords and strings highlighted, history kept per user and
//! offered as hints, Tab completing what fits where the cursor is (see [`super::completion`]).

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
use nu_ansi_term::{Color, Style};
use reedline::{
    ColumnarMenu, DefaultHinter, Emacs, FileBackedHistory, Highlighter, KeyCode, KeyModifiers,
    MenuBuilder, Prompt, PromptEditMode, PromptHistorySearch, Reedline, ReedlineEvent,
    ReedlineMenu, StyledText, ValidationResult, Validator, default_emacs_keybindings,
};

use super::completion::SessionCompleter;
use crate::sql::complete_statements;
use crate::sql::planner::Vocabulary;

/// Words a statement alone on its line may be without a `;` (as Flink's client allows).
const COMMANDS: [&str; 4] = ["HELP", "QUIT", "EXIT", "CLEAR"];

/// Whether `text` is a shell command word without its `;`.
pub fn is_command(text: &str) -> bool {
    let word = text.trim().trim_end_matches(';').trim();
    COMMANDS.iter().any(|c| c.eq_ignore_ascii_case(word))
}

struct StatementValidator;

impl Validator for StatementValidator {
    fn validate(&self, line: &str) -> ValidationResult {
        if line.trim().is_empty() || is_command(line) || complete_statements(line).is_some() {
            ValidationResult::Complete
        } else {
            ValidationResult::Incomplete
        }
    }
}

/// Keywords bold blue, strings green, comments grey.
struct SqlHighlighter;

impl Highlighter for SqlHighlighter {
    fn highlight(&self, line: &str, _cursor: usize) -> StyledText {
        let mut out = StyledText::new();
        let plain = Style::new();
        let keyword = Style::new().bold().fg(Color::Blue);
        let string = Style::new().fg(Color::Green);
        let comment = Style::new().fg(Color::DarkGray);
        let mut rest = line;
        while !rest.is_empty() {
            let (style, len) = if rest.starts_with("--") {
                (comment, rest.find('\n').unwrap_or(rest.len()))
            } else if let Some(quote) = rest.chars().next().filter(|c| *c == '\'') {
                let end = rest[1..].find(quote).map_or(rest.len(), |i| i + 2);
                (string, end)
            } else if rest.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                let len = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                let word = rest[..len].to_ascii_uppercase();
                let is_keyword = ALL_KEYWORDS.binary_search(&word.as_str()).is_ok();
                (if is_keyword { keyword } else { plain }, len)
            } else {
                (plain, rest.chars().next().map_or(1, char::len_utf8))
            };
            out.push((style, rest[..len].to_string()));
            rest = &rest[len..];
        }
        out
    }
}

/// `sluice> ` and `     -> ` on the lines that follow.
struct SluicePrompt;

impl Prompt for SluicePrompt {
    fn render_prompt_left(&self) -> Cow<'_, str> {
        Cow::Borrowed("sluice")
    }
    fn render_prompt_right(&self) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn render_prompt_indicator(&self, _mode: PromptEditMode) -> Cow<'_, str> {
        Cow::Borrowed("> ")
    }
    fn render_prompt_multiline_indicator(&self) -> Cow<'_, str> {
        Cow::Borrowed("     -> ")
    }
    fn render_prompt_history_search_indicator(&self, search: PromptHistorySearch) -> Cow<'_, str> {
        Cow::Owned(format!("(search: {}) ", search.term))
    }
}

pub struct Editor {
    line_editor: Reedline,
    prompt: SluicePrompt,
}

/// What the user did at the prompt.
pub enum Input {
    Text(String),
    /// Ctrl-C: the line is dropped.
    Cancel,
    /// Ctrl-D: the end.
    End,
}

impl Editor {
    /// An editor keeping its history in `history` (created if missing), completing from the
    /// session's `vocabulary`.
    pub fn new(history: PathBuf, vocabulary: Arc<Mutex<Vocabulary>>) -> std::io::Result<Self> {
        if let Some(dir) = history.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let history = FileBackedHistory::with_file(10_000, history)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut keys = default_emacs_keybindings();
        keys.add_binding(
            KeyModifiers::NONE,
            KeyCode::Tab,
            ReedlineEvent::UntilFound(vec![
                ReedlineEvent::Menu("completion_menu".to_string()),
                ReedlineEvent::MenuNext,
            ]),
        );
        let menu = ColumnarMenu::default().with_name("completion_menu");
        let completer = SessionCompleter { vocabulary };
        let line_editor = Reedline::create()
            .with_history(Box::new(history))
            .with_validator(Box::new(StatementValidator))
            .with_highlighter(Box::new(SqlHighlighter))
            .with_hinter(Box::new(
                DefaultHinter::default().with_style(Style::new().fg(Color::DarkGray)),
            ))
            .with_completer(Box::new(completer))
            .with_quick_completions(true)
            .with_partial_completions(true)
            .with_menu(ReedlineMenu::EngineCompleter(Box::new(menu)))
            .with_edit_mode(Box::new(Emacs::new(keys)));
        Ok(Editor {
            line_editor,
            prompt: SluicePrompt,
        })
    }

    pub fn read(&mut self) -> std::io::Result<Input> {
        Ok(match self.line_editor.read_line(&self.prompt)? {
            reedline::Signal::Success(text) => Input::Text(text),
            reedline::Signal::CtrlC => Input::Cancel,
            _ => Input::End,
        })
    }

    pub fn clear_screen(&mut self) {
        let _ = self.line_editor.clear_screen();
    }
}
