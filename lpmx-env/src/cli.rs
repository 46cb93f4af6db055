//! The command line of `lpmx-env`; also the source of its man page.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use lpmx_core::cli::{Failure, open_store, run};
use lpmx_core::container::{EnvDocument, check_env_key, parse_assignment};
use lpmx_core::document::{Document, write_document};

use crate::{EnvEditError, edit, read};

const AFTER_HELP: &str = "\
Examples:
  lpmx-env dev set OMP_NUM_THREADS=8 LANG=C.UTF-8
  lpmx-env dev unset LANG
  lpmx-env dev list
  lpmx-env dev list --json
  printf 'A=1\\nB=2\\n' | lpmx-env dev set        # KEY=VALUE lines on stdin

A change takes effect for every program started in the container
afterwards, including programs started by a shell that was already running
inside it: libunion applies the environment file at every exec. The
environment file wins: a variable it sets replaces the value a program
inherited (a variable exported in a running shell too, for the programs
that shell starts), and a variable unset with lpmx-env disappears from
programs started afterwards. A shell's own variables ($X expanded by that
shell) do not change until it starts again. Variables lpmx-env never set are
left as the program inherited them.";

/// Change a container's environment while it is in use.
#[derive(Debug, Parser)]
#[command(name = "lpmx-env", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The container (see lpmx-mkroot --list).
    #[arg(value_name = "NAME")]
    pub name: String,

    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Set variables: KEY=VALUE arguments, or KEY=VALUE lines on stdin.
    Set {
        #[arg(value_name = "KEY=VALUE")]
        assignments: Vec<String>,
    },
    /// Remove variables: KEY arguments, or KEY lines on stdin.
    Unset {
        #[arg(value_name = "KEY")]
        keys: Vec<String>,
    },
    /// Print the variables, KEY=VALUE lines (or an lpmx.env document).
    List {
        /// Print an lpmx.env document (JSON).
        #[arg(long)]
        json: bool,
    },
}

/// The clap definition, for the man page generator.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Arguments, or when there are none and stdin is not a terminal, the
/// non-blank lines of stdin (lines starting with # skipped).
fn words_or_stdin(words: Vec<String>) -> Result<Vec<String>, Failure> {
    let stdin = std::io::stdin();
    if !words.is_empty() || stdin.is_terminal() {
        return Ok(words);
    }
    let mut lines = Vec::new();
    for line in stdin.lock().lines() {
        let line =
            line.map_err(|e| Failure::from(anyhow::Error::new(e).context("failed to read stdin")))?;
        if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            lines.push(line);
        }
    }
    Ok(lines)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    run("lpmx-env", || {
        let store = open_store()?;
        let stack = lpmx_mkroot::read_stack(&store, &cli.name).map_err(|e| {
            Failure::classified(e, format!("failed to open container {}", cli.name))
        })?;
        let failed = |e: EnvEditError| {
            Failure::classified(
                e,
                format!("failed to change the environment of {}", cli.name),
            )
        };
        match cli.action {
            Action::Set { assignments } => {
                let assignments = words_or_stdin(assignments)?;
                if assignments.is_empty() {
                    return Err(Failure::usage(
                        "nothing to set: give KEY=VALUE arguments or lines on stdin",
                    ));
                }
                let parsed = assignments
                    .iter()
                    .map(|a| parse_assignment(a))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| failed(e.into()))?;
                edit(&store, &stack, |file| {
                    for (key, value) in &parsed {
                        file.set(key, value);
                    }
                    Ok(())
                })
                .map_err(failed)?;
            }
            Action::Unset { keys } => {
                let keys = words_or_stdin(keys)?;
                for key in &keys {
                    check_env_key(key).map_err(|e| failed(e.into()))?;
                }
                edit(&store, &stack, |file| {
                    for key in &keys {
                        file.unset(key);
                    }
                    Ok(())
                })
                .map_err(failed)?;
            }
            Action::List { json } => {
                let file = read(&stack).map_err(failed)?;
                let mut out = std::io::stdout().lock();
                if json {
                    let document = EnvDocument {
                        kind: EnvDocument::KIND.to_owned(),
                        version: EnvDocument::VERSION,
                        name: stack.name.clone(),
                        env: file.vars.into_iter().collect(),
                    };
                    write_document(&document, &mut out)?;
                } else {
                    for (key, value) in &file.vars {
                        writeln!(out, "{key}={value}")?;
                    }
                }
            }
        }
        Ok(())
    })
}
