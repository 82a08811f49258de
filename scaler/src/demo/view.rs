//! The live view on stderr: a progress bar with the run's numbers on a
//! terminal, a plain line every few seconds otherwise (CI logs, pipes).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// One moment of a run, as shown.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub t: f64,
    pub inbound_per_s: f64,
    pub processed_per_s: f64,
    pub lag: f64,
    pub desired: u32,
    pub running: u32,
    pub reason: String,
}

impl Status {
    fn line(&self) -> String {
        format!(
            "in {:>6.0}/s  out {:>6.0}/s  lag {:>8.0}  replicas {:>3} (running {:>3})  {}",
            self.inbound_per_s,
            self.processed_per_s,
            self.lag,
            self.desired,
            self.running,
            self.reason
        )
    }
}

pub struct View {
    bar: Option<ProgressBar>,
    name: String,
    /// Seconds between plain lines.
    every_s: f64,
    next_line_t: f64,
}

impl View {
    /// A view of run `name`, lasting about `duration_s`.
    pub fn new(name: &str, duration_s: f64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(duration_s.ceil() as u64);
            bar.set_style(
                ProgressStyle::with_template("{prefix:>8} {elapsed_precise} [{bar:24}] {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(name.to_owned());
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        View {
            bar,
            name: name.to_owned(),
            every_s: 5.0,
            next_line_t: 0.0,
        }
    }

    pub fn update(&mut self, status: &Status) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(status.t as u64);
                bar.set_message(status.line());
            }
            None if status.t >= self.next_line_t => {
                self.next_line_t = status.t + self.every_s;
                eprintln!("{:>8} {:>5.0}s  {}", self.name, status.t, status.line());
            }
            None => {}
        }
    }

    /// A message above the bar (or a plain line).
    pub fn say(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
