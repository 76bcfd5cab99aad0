//! The command line's view of a batch: a progress bar on a terminal, one line per image
//! otherwise (the engine's [`outcome_line`]), nothing with `-q`; Ctrl-C is not caught (a killed
//! run resumes). Also the command line's testing aid `CYTOSEG_TEST_CRASH_AFTER=N`: abort the
//! process like a kill, mid-image, once N images are finished — a hook of this executable only,
//! which no library host (C, JNI, Python) can reach.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use cytoseg_core::batch::{Observer, Outcome, outcome_line};

/// Progress display and the crash hook.
pub struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    finished_ok: AtomicUsize,
    crash_after: Option<usize>,
}

impl Reporter {
    /// A reporter for `total` images.
    pub fn new(total: usize, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} images, {per_sec}, ETA {eta}  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        });
        Reporter {
            bar,
            quiet,
            finished_ok: AtomicUsize::new(0),
            crash_after: std::env::var("CYTOSEG_TEST_CRASH_AFTER")
                .ok()
                .and_then(|v| v.parse().ok()),
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Observer for Reporter {
    fn output_written(&self, _index: usize, path: &Path) {
        if let Some(n) = self.crash_after
            && self.finished_ok.load(Ordering::SeqCst) >= n
            && path.to_string_lossy().ends_with("_labels.tif")
        {
            // Die like a killed process, with this image's labels written and nothing else.
            std::process::abort();
        }
    }

    fn image_finished(&self, _index: usize, o: &Outcome, done: usize, total: usize) {
        if o.status == "ok" {
            self.finished_ok.fetch_add(1, Ordering::SeqCst);
        }
        let line = outcome_line(o, done, total);
        match &self.bar {
            Some(b) => {
                if o.status == "failed" {
                    b.println(line);
                }
                b.set_message(
                    Path::new(&o.input)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
                b.inc(1);
            }
            None if !self.quiet => eprintln!("{line}"),
            None => {}
        }
    }
}
