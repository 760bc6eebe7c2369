//! Where API queries run: on their own threads (a tokio runtime of their own, at a lower
//! scheduling priority), a few at a time, each within a time limit. Intake, commits and the
//! dashboard's page keep the server's main threads, so a heavy query cannot starve them.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::error::{Error, Result};

/// The nice value of query threads: below intake's threads when the CPU is busy.
const QUERY_NICE: i32 = 10;

/// Runs API queries within their limits.
pub struct Queries {
    runtime: Option<tokio::runtime::Runtime>,
    permits: Arc<Semaphore>,
    max: usize,
    timeout: Duration,
    counts: Counts,
}

/// What the queries did, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counts {
    /// Queries run to an answer (a query's own error included).
    pub answered: AtomicU64,
    /// Refused with 429: `max` were running.
    pub refused: AtomicU64,
    /// Stopped at the time limit.
    pub timed_out: AtomicU64,
    /// Microseconds the answered queries took, together.
    pub micros: AtomicU64,
}

impl Queries {
    /// Query threads (one per core), at most `max` queries at once, each stopped after
    /// `timeout`.
    ///
    /// # Errors
    /// When the threads cannot be started.
    pub fn new(max: usize, timeout: Duration) -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .thread_name("flowscope-query")
            .on_thread_start(|| {
                // Best effort: a thread that keeps the default priority still works.
                let _ = rustix::process::setpriority_process(
                    Some(rustix::thread::gettid()),
                    QUERY_NICE,
                );
            })
            .enable_all()
            .build()
            .map_err(|e| Error::Invalid(format!("cannot start the query threads: {e}")))?;
        let max = max.max(1);
        Ok(Self {
            runtime: Some(runtime),
            permits: Arc::new(Semaphore::new(max)),
            max,
            timeout,
            counts: Counts::default(),
        })
    }

    /// What the queries did so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The time limit of one query.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `work` on the query threads: 429 when `max` queries are running already, 503 when
    /// it runs past the time limit (it is stopped then).
    pub async fn run<F>(&self, work: F) -> Response
    where
        F: Future<Output = Response> + Send + 'static,
    {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            self.counts.refused.fetch_add(1, Ordering::Relaxed);
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{} queries are running, the most the server runs at once \
                     (--max-queries); try again shortly",
                    self.max
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        };
        let runtime = self.runtime.as_ref().expect("present until dropped");
        let task = runtime.spawn(async move {
            let _permit = permit;
            work.await
        });
        let abort = task.abort_handle();
        let started = std::time::Instant::now();
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(response)) => {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.counts.answered.fetch_add(1, Ordering::Relaxed);
                self.counts.micros.fetch_add(micros, Ordering::Relaxed);
                response
            }
            Ok(Err(e)) => ApiError::internal(format!("the query failed: {e}")).into_response(),
            Err(_) => {
                // Dropping the query's future cancels its DataFusion tasks and frees its permit.
                abort.abort();
                self.counts.timed_out.fetch_add(1, Ordering::Relaxed);
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the query ran past the {:.0} s limit (--query-timeout) and was stopped",
                        self.timeout.as_secs_f64()
                    ),
                )
                .into_response()
            }
        }
    }
}

impl Drop for Queries {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which async code may not do.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
