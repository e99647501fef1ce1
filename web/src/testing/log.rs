//! Every test process logs into one file at trace level, and every test app checks, when it is
//! dropped, that none of the secrets it knows reached it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

use super::app::TestApp;
use super::{ADMIN_TOKEN, APP_SECRET, PASSWORD, VERIFY_TOKEN};

/// What every test process logs: everything, at trace level, for the "no secret in the log"
/// check; `WAOS_TEST_LOG` overrides it.
const TEST_LOG_FILTER: &str = "trace";

/// The test process's log file: every test app logs into it at trace level (installed once per
/// process, with the product's own filter), so that each app can check, when dropped, that no
/// secret it knows reached a log. Under `$TMPDIR/waos-test-logs/`; emptied after each check.
pub fn trace_log() -> &'static Path {
    static LOG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let folder = std::env::temp_dir().join("waos-test-logs");
        let _ = std::fs::create_dir_all(&folder);
        let path = folder.join(format!("{}.log", std::process::id()));
        let filter = std::env::var("WAOS_TEST_LOG").unwrap_or_else(|_| TEST_LOG_FILTER.into());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path);
        if let Ok(file) = file
            && LOG_FILE
                .set(Mutex::new(std::io::BufWriter::with_capacity(1 << 16, file)))
                .is_ok()
        {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(crate::logging::filter(&filter))
                .with_writer(|| TestLogWriter)
                .with_ansi(false)
                .try_init();
        }
        path
    })
}

/// The log file behind [`trace_log`], buffered (a busy test writes many thousand lines).
static LOG_FILE: std::sync::OnceLock<Mutex<std::io::BufWriter<std::fs::File>>> =
    std::sync::OnceLock::new();

struct TestLogWriter;

impl std::io::Write for TestLogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match LOG_FILE.get() {
            Some(file) => file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .write(bytes),
            None => Ok(bytes.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match LOG_FILE.get() {
            Some(file) => file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .flush(),
            None => Ok(()),
        }
    }
}

impl TestApp {
    /// Remembers a secret a response carried (`token`, `ticket`), for the log check.
    pub(super) fn remember_secrets(&self, answer: &Value) {
        for field in ["token", "ticket"] {
            if let Some(secret) = answer.get(field).and_then(Value::as_str) {
                self.secrets.lock().unwrap().push(secret.to_owned());
            }
        }
    }

    /// Panics if the process's log holds any secret this app knows.
    pub(super) fn check_log_holds_no_secret(&self) {
        use std::io::Write;
        let _ = TestLogWriter.flush();
        let Ok(log) = std::fs::read_to_string(trace_log()) else {
            return;
        };
        let mut secrets: Vec<String> = self.secrets.lock().unwrap().clone();
        secrets.extend([ADMIN_TOKEN, APP_SECRET, PASSWORD, VERIFY_TOKEN].map(str::to_owned));
        for secret in secrets {
            assert!(
                !log.contains(&secret),
                "the trace-level log ({}) holds a secret: {secret}",
                trace_log().display()
            );
        }
        // Checked: what comes next is the next app's (the file is appended to).
        if let Ok(file) = std::fs::OpenOptions::new().write(true).open(trace_log()) {
            let _ = file.set_len(0);
        }
    }
}
