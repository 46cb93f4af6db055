//! Progress on stderr: bars on a terminal, one plain line per finished step
//! otherwise (logs of batch jobs stay readable), nothing with `--quiet`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    tool: &'static str,
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    Quiet,
    Plain,
    Bars(MultiProgress),
}

impl Progress {
    pub fn new(tool: &'static str, quiet: bool) -> Progress {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Mode::Plain
        };
        Progress { tool, mode }
    }

    /// A line for people: printed above the bars, or plainly.
    pub fn message(&self, text: impl AsRef<str>) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain => {
                let _ = writeln!(std::io::stderr(), "{}: {}", self.tool, text.as_ref());
            }
            Mode::Bars(bars) => {
                let _ = bars.println(text.as_ref());
            }
        }
    }

    /// A step of `total` bytes (when known), shown as a bar on a terminal.
    pub fn task(&self, label: impl Into<String>, total: Option<u64>) -> Task {
        let label = label.into();
        let bar = match &self.mode {
            Mode::Bars(bars) => {
                let bar = match total {
                    Some(total) => ProgressBar::new(total).with_style(
                        ProgressStyle::with_template(
                            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    ),
                    None => ProgressBar::new_spinner(),
                };
                let bar = bars.add(bar.with_prefix(label.clone()));
                bar.enable_steady_tick(Duration::from_millis(200));
                Some(bar)
            }
            _ => None,
        };
        Task {
            progress: self.clone(),
            label,
            bar,
        }
    }
}

pub struct Task {
    progress: Progress,
    label: String,
    bar: Option<ProgressBar>,
}

impl Task {
    pub fn set_position(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    pub fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    /// Ends the step with `outcome` ("done", "already present", ...).
    pub fn finish(self, outcome: &str) {
        match &self.bar {
            Some(bar) => {
                bar.finish_and_clear();
                self.progress.message(format!("{}: {outcome}", self.label));
            }
            None => self.progress.message(format!("{}: {outcome}", self.label)),
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
