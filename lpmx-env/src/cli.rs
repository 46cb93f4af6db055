//! The command line of `lpmx-env`; also the source of its man page.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use lpmx_core::cli::{Failure, open_store, run};
use lpmx_core::container::{EnvDocument, check_env_key, parse_assignment};
use lpmx_core::document::{Document, write_document};

use crate::{EnvEditError, edit, edit_host_programs, read, read_host_programs, write_wrapper};

const AFTER_HELP: &str = "\
Examples:
  lpmx-env dev set OMP_NUM_THREADS=8 LANG=C.UTF-8
  lpmx-env dev unset LANG
  lpmx-env dev list
  lpmx-env dev list --json
  printf 'A=1\\nB=2\\n' | lpmx-env dev set        # KEY=VALUE lines on stdin
  lpmx-env dev host add /usr/bin/sbatch          # run the host's sbatch
  lpmx-env dev expose python3 --as dev-python    # ~/.local/bin/dev-python

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
#[command(name = "lpmx-env", version = lpmx_core::cli::VERSION, after_help = AFTER_HELP)]
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
    /// Host programs: container paths whose exec runs the host's program
    /// (sbatch, qsub, ssh...) as a host process.
    Host {
        #[command(subcommand)]
        action: HostAction,
    },
    /// Write a host command running PROGRAM in this container (arguments,
    /// stdin, stdout and exit status passed through), callable from the
    /// host and from inside other containers.
    Expose {
        /// The program (a name on the container's PATH, or a path).
        #[arg(value_name = "PROGRAM")]
        program: String,
        /// The command's name (default: PROGRAM's file name).
        #[arg(long = "as", value_name = "NAME")]
        name: Option<String>,
        /// Where to write it (default $LPMX_BIN, else ~/.local/bin).
        #[arg(long, value_name = "DIR")]
        bin: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HostAction {
    /// Add HOST (seen at the same path inside) or HOST:CONTAINER.
    Add {
        #[arg(value_name = "HOST[:CONTAINER]", required = true)]
        specs: Vec<String>,
    },
    /// Remove the host programs at these container paths.
    Remove {
        #[arg(value_name = "CONTAINER", required = true)]
        paths: Vec<std::path::PathBuf>,
    },
    /// Print CONTAINER=HOST lines.
    List,
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
            Action::Host { action } => match action {
                HostAction::Add { specs } => {
                    edit_host_programs(&store, &stack, |programs| {
                        for spec in &specs {
                            programs.add(spec)?;
                        }
                        Ok(())
                    })
                    .map_err(failed)?;
                }
                HostAction::Remove { paths } => {
                    edit_host_programs(&store, &stack, |programs| {
                        for path in &paths {
                            programs.remove(path);
                        }
                        Ok(())
                    })
                    .map_err(failed)?;
                }
                HostAction::List => {
                    let programs = read_host_programs(&stack).map_err(failed)?;
                    std::io::stdout()
                        .lock()
                        .write_all(programs.render().as_bytes())?;
                }
            },
            Action::Expose { program, name, bin } => {
                let name = name.unwrap_or_else(|| {
                    std::path::Path::new(&program)
                        .file_name()
                        .map_or(program.clone(), |n| n.to_string_lossy().into_owned())
                });
                if name.is_empty() || name.contains('/') || name.starts_with('.') {
                    return Err(Failure::usage(format!("invalid command name {name:?}")));
                }
                let bin = bin
                    .or_else(|| std::env::var_os("LPMX_BIN").map(Into::into))
                    .or_else(|| {
                        std::env::var_os("HOME")
                            .map(|h| std::path::Path::new(&h).join(".local/bin"))
                    })
                    .ok_or_else(|| {
                        Failure::usage("no --bin, $LPMX_BIN or $HOME to write the command to")
                    })?;
                let exe = std::env::current_exe()?;
                let lpmx_exec = exe.with_file_name("lpmx-exec");
                let path =
                    write_wrapper(&bin, &name, &cli.name, &program, store.root(), &lpmx_exec)
                        .map_err(failed)?;
                writeln!(std::io::stdout().lock(), "{}", path.display())?;
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
