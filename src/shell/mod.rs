//! `sluice shell`: an interactive SQL shell like Flink's SQL client. Statements are typed (or read
//! from `-i` / `-f` files) and run one at a time against a [`Session`]; jobs that `INSERT`s start
//! run inside the shell and stop with savepoints when it ends.

mod backend;
mod completion;
mod editor;
pub mod results;
mod session;
mod table_view;
mod typeahead;

use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub use backend::Jobs;
pub use editor::is_command;
pub use session::{HELP, Reply, Session};

use crate::sql::planner::ResultMode;

use crate::checkpoint::data_dir;
use crate::jobs::{JobManager, LocalAccess};
use crate::sql::complete_statements;

/// A session whose jobs run inside this process, kept under the user's data directory.
pub fn local_session(config: crate::config::SluiceConfig) -> Result<Session, String> {
    let options = config.runtime_options();
    let settings = config.settings();
    let jobs = JobManager::open(&data_dir().join("shell"), config, LocalAccess::any())
        .map_err(|e| e.to_string())?;
    Ok(Session::new(Jobs::Local(jobs), options, settings))
}

/// A session whose `INSERT`s run as jobs of the server at `url` and whose `SELECT`s it runs.
pub fn server_session(
    config: &crate::config::SluiceConfig,
    url: &str,
    token: Option<String>,
) -> Session {
    // The server's jobs take the server's sluice.yaml, not this one.
    Session::new(
        Jobs::server(url, token),
        config.runtime_options(),
        Vec::new(),
    )
}

/// Runs every statement of `file`; the first error ends it (with file:line:col). `init_only`
/// allows DDL and `SET` only (`-i`). Returns false on an error.
pub async fn run_file(session: &mut Session, file: &Path, init_only: bool) -> bool {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {}: {e}", file.display());
            return false;
        }
    };
    let name = file.display().to_string();
    let Some(statements) = complete_statements(&text) else {
        if text.trim().is_empty() {
            return true;
        }
        eprintln!("{name}: the last statement has no `;`");
        return false;
    };
    session.init_only = init_only;
    let mut ok = true;
    for (from, statement) in statements {
        // Blank out what comes before, so positions in errors are the file's.
        let padded: String = text[..from]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect::<String>()
            + &statement;
        let reply = match session.execute(&name, &padded).await {
            Ok(query @ (Reply::Query(_) | Reply::ServerQuery(_))) => show_query(session, query)
                .await
                .map(|_| Reply::Text(String::new())),
            other => other,
        };
        match reply {
            Ok(Reply::Text(t)) if !t.is_empty() => println!("{t}"),
            Ok(Reply::Quit) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("{e}");
                ok = false;
                break;
            }
        }
    }
    session.init_only = false;
    ok
}

/// Shows a query's rows — run here, or by the server and streamed back — as the session's
/// result mode says (`table` needs a terminal: elsewhere rows are printed as in `tableau`).
async fn show_query(session: &Session, query: Reply) -> Result<(), String> {
    let rows = match query {
        Reply::Query(job) => match results::Rows::local(job, session.options.clone()) {
            Some(rows) => rows,
            None => return Ok(()),
        },
        Reply::ServerQuery(sql) => results::Rows::streamed(session.server_preview(sql).await?),
        _ => return Ok(()),
    };
    let display = session.display().clone();
    if display.result_mode == ResultMode::Table && std::io::stdout().is_terminal() {
        let summary =
            table_view::show_table(rows, display.max_table_rows, display.max_column_width).await?;
        println!("{summary}");
        return Ok(());
    }
    results::show_tableau(rows, display.max_column_width, |l| println!("{l}"))
        .await
        .map(|_| ())
}

/// The interactive loop, until QUIT or Ctrl-D; running jobs then stop with savepoints.
pub async fn interactive(session: &mut Session) -> std::io::Result<()> {
    let vocabulary = Arc::new(Mutex::new(session.vocabulary()));
    let mut editor = editor::Editor::new(data_dir().join("shell_history"), vocabulary.clone())?;
    println!("Sluice SQL shell. Statements end with `;`. HELP; for help, Ctrl-D to quit.");
    let _type_ahead = typeahead::TypeAhead::keep();
    loop {
        let input = tokio::task::block_in_place(|| editor.read())?;
        let text = match input {
            editor::Input::Text(t) => t,
            editor::Input::Cancel => continue,
            editor::Input::End => break,
        };
        let statements = if is_command(&text) {
            vec![text]
        } else {
            complete_statements(&text)
                .map(|s| s.into_iter().map(|(_, t)| t).collect())
                .unwrap_or_else(|| vec![text])
        };
        let mut quit = false;
        for statement in statements {
            match session.execute("input", &statement).await {
                Ok(Reply::Text(t)) if !t.is_empty() => println!("{t}\n"),
                Ok(Reply::Text(_)) => {}
                Ok(query @ (Reply::Query(_) | Reply::ServerQuery(_))) => {
                    if let Err(e) = show_query(session, query).await {
                        println!("[ERROR] {e}");
                    }
                    println!();
                }
                Ok(Reply::Clear) => editor.clear_screen(),
                Ok(Reply::Quit) => quit = true,
                Err(e) => println!("[ERROR] {e}\n"),
            }
        }
        *vocabulary.lock().unwrap_or_else(|p| p.into_inner()) = session.vocabulary();
        if quit {
            break;
        }
    }
    let stopped = session.stop_jobs().await;
    if !stopped.is_empty() {
        println!(
            "stopped {} job(s) with savepoints: {}",
            stopped.len(),
            stopped.join(", ")
        );
    }
    println!("Goodbye!");
    Ok(())
}
