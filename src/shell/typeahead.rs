//! Lines typed while a statement runs reach the prompt, each on its own.
//!
//! Between prompts the terminal is in its ordinary (cooked) mode, where the kernel turns each
//! Enter (a carriage return) into a line feed as it arrives. Back at the prompt, the line
//! editor reads a line feed as Ctrl-J, which does not end its batch of keys: two lines typed
//! or pasted while a statement ran came as one batch, and reedline dropped the rest of the
//! batch once the first line was submitted. With carriage returns kept as they are, every
//! Enter ends a batch, and each line comes to a prompt of its own.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use rustix::termios::{InputModes, OptionalActions, Termios, tcgetattr, tcsetattr};

/// Keeps carriage returns typed into the terminal as they are, until dropped.
pub struct TypeAhead {
    original: Termios,
}

impl TypeAhead {
    /// `None` when standard input is no terminal, or its mode cannot be changed (then lines
    /// typed ahead behave as before).
    pub fn keep() -> Option<TypeAhead> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let original = tcgetattr(stdin.as_fd()).ok()?;
        let mut mode = original.clone();
        mode.input_modes.remove(InputModes::ICRNL);
        tcsetattr(stdin.as_fd(), OptionalActions::Now, &mode).ok()?;
        Some(TypeAhead { original })
    }
}

impl Drop for TypeAhead {
    /// The terminal as it was, for the program that runs after the shell.
    fn drop(&mut self) {
        let _ = tcsetattr(
            std::io::stdin().as_fd(),
            OptionalActions::Now,
            &self.original,
        );
    }
}
