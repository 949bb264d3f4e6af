//! One execution's run: start an instance, wait for its report (or its death, the
//! deadline, a cancel, shutdown), record the result durably, clean up, start the next.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_protocol::env;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::finish::Ending;
use super::warm::Record;
use super::{hash_token, ActiveRun, CallbackReport, Dispatcher, Recorded, ReportDelivery};
use crate::domain::{codes, Execution, ExecutionError, ExecutionStatus, Finished, Started};
use crate::logs::LogSink;
use crate::registry::catalog::LoadedFunction;
use crate::runtime::{Instance, InstanceExit, Launch};
use crate::secrets::Masker;

/// Time the control plane grants beyond the watchdog's own deadline and kill grace
/// before it stops the instance itself.
const DEADLINE_MARGIN: Duration = Duration::from_millis(1_000);
/// Grace between SIGTERM and SIGKILL when the control plane stops an instance.
const STOP_GRACE: Duration = Duration::from_millis(1_000);
/// How long an instance may take to exit after it reported.
const EXIT_AFTER_REPORT: Duration = Duration::from_millis(3_000);

enum Event {
    Report(CallbackReport, oneshot::Sender<Recorded>),
    Exited(InstanceExit),
    Cancelled,
    Deadline,
    Shutdown,
}

impl Dispatcher {
    /// Claims and runs execution `id` of `function` (`fresh` when the caller has the
    /// record). An execution another runner claimed, or that was cancelled, is left
    /// alone.
    pub(super) async fn run(self: Arc<Self>, function: String, id: Uuid, fresh: Option<Execution>) {
        if let Some(execution) = self.claim_to_run(id, fresh).await {
            self.run_loaded(execution).await;
        }
        let (start, load) = self.admission.finished(&function);
        self.metrics.set_load(&function, load.queued, load.running);
        self.start_queued(&function, start);
    }

    /// Claims queued execution `id` for this node and answers its record, now
    /// `starting`; `None` when it is not there to claim.
    async fn claim_to_run(&self, id: Uuid, fresh: Option<Execution>) -> Option<Execution> {
        if self.closing.load(Ordering::SeqCst) {
            // Stays queued for the next start; a caller waiting for it gets the record
            // as it is.
            if let Ok(Some(record)) = self.store.get_execution(id).await {
                self.notify(&record);
            }
            return None;
        }
        let claim = self.claim();
        match self.store.claim(id, &claim).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(err) => {
                // Left queued: the next start (or another node) runs it.
                tracing::error!(execution = %id, "cannot claim the execution to run it: {err}");
                return None;
            }
        }
        let mut execution = match fresh {
            Some(execution) => execution,
            None => match self.store.get_execution(id).await {
                Ok(Some(execution)) => execution,
                Ok(None) => return None,
                Err(err) => {
                    // Left claimed by this node: its next start settles it.
                    tracing::error!(execution = %id, "cannot load the execution to run it: {err}");
                    return None;
                }
            },
        };
        execution.status = ExecutionStatus::Starting;
        execution.owner = Some(claim.owner);
        execution.lease_until = Some(claim.lease_until);
        Some(execution)
    }

    async fn run_loaded(self: &Arc<Self>, mut execution: Execution) {
        let id = execution.id;
        // A warm function runs on its pool, at its current version.
        if let Ok(current) = self.catalog.current(&execution.function).await {
            if current.spec().warm.is_some() {
                if self.closing.load(Ordering::SeqCst) {
                    self.unclaim(&mut execution).await;
                    return;
                }
                self.run_warm(&mut execution, &current, None, Record::Stored)
                    .await;
                return;
            }
        }
        let function = match self
            .catalog
            .version(&execution.function, execution.version)
            .await
        {
            Ok(function) => function,
            Err(err) => {
                let error = ExecutionError::new(
                    codes::SPAWN_ERROR,
                    format!("cannot load the function: {err}"),
                );
                let finished = failed(ExecutionStatus::Error, error, None);
                self.conclude(&mut execution, finished, None, None).await;
                self.notify(&execution);
                return;
            }
        };
        let secrets = match self.vault.resolve(&function.spec().secrets).await {
            Ok(secrets) => secrets,
            Err(err) => {
                let error = ExecutionError::new(
                    codes::SPAWN_ERROR,
                    format!("cannot read the function's secrets: {err}"),
                );
                let finished = failed(ExecutionStatus::Error, error, None);
                let ending = self
                    .conclude(&mut execution, finished, Some(&function), None)
                    .await;
                self.after(ending, &execution).await;
                return;
            }
        };
        let token = hex::encode(rand::random::<[u8; 32]>());
        let token_hash = hash_token(&token);
        let (reports_tx, mut reports) = mpsc::channel(4);
        let cancel = CancellationToken::new();
        let input = serde_json::to_string(&execution.input).unwrap_or_else(|_| "null".into());
        let mut launch_env = vec![
            (env::EXECUTION_ID.to_owned(), id.to_string()),
            (
                env::CALLBACK_URL.to_owned(),
                self.settings.callback_base.clone(),
            ),
            (env::CALLBACK_TOKEN.to_owned(), token),
            (env::TIMEOUT_MS.to_owned(), execution.timeout_ms.to_string()),
            (
                env::MAX_OUTPUT_BYTES.to_owned(),
                self.settings.max_output_bytes.to_string(),
            ),
        ];
        if let Some(trace_id) = &execution.trace_id {
            launch_env.push((env::TRACE_ID.to_owned(), trace_id.clone()));
        }
        let large_payload = if input.len() > self.settings.max_env_payload_bytes {
            launch_env.push((
                env::PAYLOAD_URL.to_owned(),
                format!("{}/{id}/payload", self.settings.callback_base),
            ));
            Some(Arc::new(input))
        } else {
            launch_env.push((env::INVOCATION_PAYLOAD.to_owned(), input));
            None
        };
        for (key, value) in &function.spec().env {
            launch_env.push((key.clone(), value.clone()));
        }
        let masker = secrets.masker;
        launch_env.extend(secrets.env);
        self.active.insert(
            id,
            ActiveRun {
                token_hash: token_hash.clone(),
                reports: reports_tx,
                cancel: cancel.clone(),
                large_payload,
            },
        );
        // Checked after registering (shutdown sets `closing`, then waits for `active`):
        // a stopping server starts nothing new. The execution stays queued in the store
        // for the next start; a caller waiting for it gets the record as it is.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.closing.load(Ordering::SeqCst) {
            self.active.remove(&id);
            self.unclaim(&mut execution).await;
            return;
        }
        let (sink, writer) = LogSink::start(
            id,
            self.settings.log_cap_bytes,
            self.store.clone(),
            self.logs.clone(),
        );
        let sink = sink
            .masked(masker.clone())
            .keeping_last_line(self.settings.max_output_bytes + super::REPORT_ENVELOPE_BYTES);
        let started = Instant::now();
        let launch = Launch {
            execution_id: id,
            function: function.version.clone(),
            env: launch_env,
            logs: sink,
        };
        let mut instance = match self.runtime.start(launch).await {
            Ok(instance) => instance,
            Err(err) => {
                let error = ExecutionError::new(codes::SPAWN_ERROR, err.to_string());
                let finished = failed(ExecutionStatus::Error, error, None);
                let ending = self
                    .conclude(&mut execution, finished, Some(&function), None)
                    .await;
                writer.finish().await;
                self.cleanup(id);
                self.after(ending, &execution).await;
                return;
            }
        };
        let start_record = Started {
            instance_id: instance.id().to_owned(),
            cold_start: true,
            callback_token_hash: token_hash,
            started_at: crate::domain::now(),
        };
        match self
            .store
            .mark_running(id, &self.settings.owner, &start_record)
            .await
        {
            Ok(true) => {
                execution.status = ExecutionStatus::Running;
                execution.instance_id = Some(start_record.instance_id.clone());
                execution.cold_start = Some(true);
                execution.started_at = Some(start_record.started_at);
            }
            Ok(false) => {
                // Cancelled while it started.
                instance.kill(STOP_GRACE).await;
                writer.finish().await;
                self.cleanup(id);
                if let Ok(Some(now)) = self.store.get_execution(id).await {
                    self.notify(&now);
                }
                return;
            }
            Err(err) => tracing::warn!(execution = %id, "cannot record the start: {err}"),
        }
        let deadline = Duration::from_millis(execution.timeout_ms + env::defaults::KILL_GRACE_MS)
            + DEADLINE_MARGIN;
        let event = tokio::select! {
            biased;
            Some((report, ack)) = reports.recv() => Event::Report(report, ack),
            _ = cancel.cancelled() => Event::Cancelled,
            _ = self.shutdown.cancelled() => Event::Shutdown,
            exit = instance.wait() => Event::Exited(exit),
            _ = tokio::time::sleep(deadline) => Event::Deadline,
        };
        let elapsed = started.elapsed();
        let (finished, ack) = match event {
            Event::Report(report, ack) => {
                let report = oom_checked(instance.as_mut(), masked(&masker, report)).await;
                (
                    Self::report_outcome(&function, report, elapsed).await,
                    Some(ack),
                )
            }
            Event::Exited(exit) => match reports.try_recv() {
                Ok((report, ack)) => {
                    let report = oom_checked(instance.as_mut(), masked(&masker, report)).await;
                    (
                        Self::report_outcome(&function, report, elapsed).await,
                        Some(ack),
                    )
                }
                Err(_) => {
                    // The watchdog is gone without reporting (crashed, killed): the
                    // function's process group, which only the watchdog would have
                    // stopped, may live on. Stop whatever carries the execution's marks.
                    instance.kill(STOP_GRACE).await;
                    if instance.oom_killed().await {
                        (
                            failed(ExecutionStatus::Error, oom_error(), Some(elapsed)),
                            None,
                        )
                    } else {
                        (
                            Self::exit_outcome(&function, &masker, exit, elapsed).await,
                            None,
                        )
                    }
                }
            },
            Event::Cancelled => {
                // Answer a report that arrives now at once, so the watchdog is not held.
                refuse_reports(&mut reports);
                instance.kill(STOP_GRACE).await;
                let error = ExecutionError::new(
                    codes::CANCELLED,
                    "cancelled while running; its instance was stopped",
                );
                (
                    failed(ExecutionStatus::Cancelled, error, Some(elapsed)),
                    None,
                )
            }
            Event::Deadline => {
                refuse_reports(&mut reports);
                instance.kill(STOP_GRACE).await;
                let error = ExecutionError::new(
                    codes::TIMEOUT,
                    format!(
                        "no result within {} ms; the control plane stopped the instance",
                        execution.timeout_ms
                    ),
                );
                (failed(ExecutionStatus::Timeout, error, Some(elapsed)), None)
            }
            Event::Shutdown => {
                refuse_reports(&mut reports);
                instance.kill(STOP_GRACE).await;
                writer.finish().await;
                self.cleanup(id);
                self.notify(&execution);
                return;
            }
        };
        let ending = self
            .conclude(&mut execution, finished, Some(&function), ack)
            .await;
        // The result is final: a repeated or late report is answered at once (not
        // applied) instead of waiting until the instance is gone.
        refuse_reports(&mut reports);
        // The report is durable; now let the instance exit and its output drain.
        if tokio::time::timeout(EXIT_AFTER_REPORT, instance.wait())
            .await
            .is_err()
        {
            instance.kill(STOP_GRACE).await;
        }
        drop(instance);
        writer.finish().await;
        self.cleanup(id);
        self.after(ending, &execution).await;
    }

    /// After an attempt: a retried execution is scheduled again, a final one answered
    /// to its waiters (as stored, when another result was final first).
    pub(super) async fn after(self: &Arc<Self>, ending: Ending, execution: &Execution) {
        match ending {
            Ending::Retried => self.schedule(execution),
            Ending::Final(true) => self.notify(execution),
            Ending::Final(false) => {
                if let Ok(Some(now)) = self.store.get_execution(execution.id).await {
                    self.notify(&now);
                }
            }
        }
    }

    /// Gives back the claim on an execution that did not start (the server is
    /// stopping): it is queued again for the next start, and a caller waiting for it
    /// gets the record as it is.
    async fn unclaim(&self, execution: &mut Execution) {
        let owner = &self.settings.owner;
        match self
            .store
            .requeue(execution.id, owner, execution.attempt)
            .await
        {
            Ok(_) => {
                execution.status = ExecutionStatus::Queued;
                execution.owner = None;
                execution.lease_until = None;
            }
            Err(err) => {
                tracing::warn!(execution = %execution.id, "cannot give back the claim: {err}")
            }
        }
        self.notify(execution);
    }

    fn cleanup(&self, id: Uuid) {
        self.active.remove(&id);
        self.logs.close(id);
    }

    pub(super) async fn report_outcome(
        function: &LoadedFunction,
        report: CallbackReport,
        elapsed: Duration,
    ) -> Finished {
        let duration_ms = report.duration_ms.or(Some(elapsed.as_millis() as u64));
        if report.success {
            let output = report.output.unwrap_or(serde_json::Value::Null);
            if let Some(schema) = &function.output_schema {
                let violations = schema
                    .check(&output)
                    .await
                    .unwrap_or_else(|slow| vec![slow.to_string()]);
                if !violations.is_empty() {
                    return Finished {
                        status: ExecutionStatus::Error,
                        output: Some(output),
                        error: Some(ExecutionError::new(
                            codes::OUTPUT_SCHEMA_VIOLATION,
                            format!(
                                "the output does not match the output_schema: {}",
                                violations.join("; ")
                            ),
                        )),
                        exit_code: report.exit_code,
                        duration_ms,
                        finished_at: crate::domain::now(),
                        dead_letter: false,
                    };
                }
            }
            return Finished {
                status: ExecutionStatus::Success,
                output: Some(output),
                error: None,
                exit_code: report.exit_code,
                duration_ms,
                finished_at: crate::domain::now(),
                dead_letter: false,
            };
        }
        let error = report.error.unwrap_or_else(|| {
            ExecutionError::new(
                codes::FUNCTION_ERROR,
                "the watchdog reported a failure without a reason",
            )
        });
        let status = if error.code == codes::TIMEOUT {
            ExecutionStatus::Timeout
        } else {
            ExecutionStatus::Error
        };
        Finished {
            status,
            output: None,
            error: Some(error),
            exit_code: report.exit_code,
            duration_ms,
            finished_at: crate::domain::now(),
            dead_letter: false,
        }
    }

    async fn exit_outcome(
        function: &LoadedFunction,
        masker: &Masker,
        exit: InstanceExit,
        elapsed: Duration,
    ) -> Finished {
        // Exit 75: the watchdog could not deliver its report and printed it on stdout.
        if exit.code == Some(75) {
            if let Some(report) = exit
                .last_stdout_line
                .as_deref()
                .and_then(|line| serde_json::from_str::<CallbackReport>(line).ok())
            {
                return Self::report_outcome(function, masked(masker, report), elapsed).await;
            }
        }
        let error = ExecutionError::new(
            codes::RUNTIME_CRASHED,
            format!("the watchdog ended with {exit} without reporting a result"),
        );
        failed(ExecutionStatus::Error, error, Some(elapsed))
    }
}

/// `report` with the function's secret values hidden in its output and error message.
pub(super) fn masked(masker: &Masker, mut report: CallbackReport) -> CallbackReport {
    if masker.is_empty() {
        return report;
    }
    report.output = report.output.map(|output| masker.json(output));
    if let Some(error) = &mut report.error {
        error.message = masker.text(&error.message);
    }
    report
}

/// The error of an instance its memory limit killed.
fn oom_error() -> ExecutionError {
    ExecutionError::new(
        codes::OOM_KILLED,
        "the function ran out of its memory limit (resources.memory_mb) and was killed",
    )
}

/// A failure report of an instance that was OOM-killed becomes an OOM_KILLED error.
async fn oom_checked(instance: &mut dyn Instance, mut report: CallbackReport) -> CallbackReport {
    if !report.success && instance.oom_killed().await {
        report.error = Some(oom_error());
    }
    report
}

/// Closes an execution's report channel: later reports are answered at once as not
/// applied, and so are any already waiting in it.
fn refuse_reports(reports: &mut mpsc::Receiver<ReportDelivery>) {
    reports.close();
    while let Ok((_, ack)) = reports.try_recv() {
        let _ = ack.send(Recorded::AlreadyFinal);
    }
}

pub(super) fn failed(
    status: ExecutionStatus,
    error: ExecutionError,
    elapsed: Option<Duration>,
) -> Finished {
    Finished {
        status,
        output: None,
        error: Some(error),
        exit_code: None,
        duration_ms: elapsed.map(|elapsed| elapsed.as_millis() as u64),
        finished_at: crate::domain::now(),
        dead_letter: false,
    }
}
