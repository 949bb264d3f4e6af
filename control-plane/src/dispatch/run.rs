//! One execution's run: start an instance, wait for its report (or its death, the
//! deadline, a cancel, shutdown), record the result durably, clean up, start the next.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_protocol::env;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::attempt::{self, Bounds, Ended, Running, EXIT_AFTER_REPORT, STOP_GRACE};
use super::finish::Ending;
use super::outcome::{self, exit_outcome, failed, masked, oom_checked, oom_error, report_outcome};
use super::warm::Record;
use super::{hash_token, ActiveRun, CallbackReport, Dispatcher, Recorded, ReportDelivery};
use crate::domain::{codes, Execution, ExecutionStatus, Finished, Started};
use crate::logs::LogSink;
use crate::registry::catalog::LoadedFunction;
use crate::registry::manifest::DEFAULT_MAX_IN_FLIGHT;
use crate::runtime::{Instance, InstanceExit, Launch};
use crate::secrets::Masker;
use crate::store::Store;

/// How long a function at its cluster-wide `max_in_flight` waits before this node tries
/// to claim its next execution again.
const CLAIM_RETRY: Duration = Duration::from_millis(200);

/// What became of a claim.
enum Claimed {
    /// This node holds the execution now.
    Yes(Box<Execution>),
    /// Not there to claim (claimed by another runner, cancelled, finished, stopping).
    No,
    /// It still waits, but its function is at its cluster-wide `max_in_flight`.
    AtLimit,
}

/// What a cold instance answers: its watchdog's report, or its end.
enum ColdAnswer {
    Report(CallbackReport, oneshot::Sender<Recorded>),
    Exited(InstanceExit),
}

/// A cold attempt: an instance started for one execution, which reports through the
/// callback route.
struct ColdRun {
    instance: Box<dyn Instance>,
    reports: mpsc::Receiver<ReportDelivery>,
    masker: Masker,
    function: Arc<LoadedFunction>,
}

impl Running for ColdRun {
    type Answer = ColdAnswer;

    fn answer(&mut self) -> impl Future<Output = ColdAnswer> + Send {
        let (reports, instance) = (&mut self.reports, &mut self.instance);
        async move {
            tokio::select! {
                biased;
                Some((report, ack)) = reports.recv() => ColdAnswer::Report(report, ack),
                exit = instance.wait() => ColdAnswer::Exited(exit),
            }
        }
    }

    async fn outcome(&mut self, answer: ColdAnswer, elapsed: Duration) -> Ended {
        let (report, ack) = match answer {
            ColdAnswer::Report(report, ack) => (report, ack),
            ColdAnswer::Exited(exit) => match self.reports.try_recv() {
                Ok(delivery) => delivery,
                Err(_) => return Ended::Finished(self.exited(exit, elapsed).await, None),
            },
        };
        let report = masked(&self.masker, report);
        let report = oom_checked(self.instance.as_mut(), report).await;
        let finished = report_outcome(&self.function, report, elapsed).await;
        Ended::Finished(finished, Some(ack))
    }

    async fn stop(&mut self) {
        // A report that arrives now is answered at once, so the watchdog is not held.
        refuse_reports(&mut self.reports);
        self.instance.kill(STOP_GRACE).await;
    }
}

impl ColdRun {
    /// The watchdog is gone without reporting (crashed, killed): the function's process
    /// group, which only the watchdog would have stopped, may live on, so whatever
    /// carries the execution's marks is stopped first.
    async fn exited(&mut self, exit: InstanceExit, elapsed: Duration) -> Finished {
        self.instance.kill(STOP_GRACE).await;
        if self.instance.oom_killed().await {
            failed(ExecutionStatus::Error, oom_error(), Some(elapsed))
        } else {
            exit_outcome(&self.function, &self.masker, exit, elapsed).await
        }
    }
}

impl Dispatcher {
    /// Claims and runs execution `id` of `function` (`fresh` when the caller has the
    /// record). An execution another runner claimed, or that was cancelled, is left
    /// alone.
    pub(super) async fn run(self: Arc<Self>, function: String, id: Uuid, fresh: Option<Execution>) {
        let span = super::execution_span(id, fresh.as_ref().and_then(|e| e.trace_id.as_deref()));
        self.claim_and_run(function, id, fresh)
            .instrument(span)
            .await;
    }

    async fn claim_and_run(self: Arc<Self>, function: String, id: Uuid, fresh: Option<Execution>) {
        match self.claim_to_run(&function, id, fresh).await {
            Claimed::Yes(mut execution) => {
                // Too old to run: ended, never started.
                if !self.end_if_expired(&mut execution).await {
                    self.run_loaded(*execution).await;
                }
            }
            Claimed::No => {}
            Claimed::AtLimit => self.hold_back(&function, id),
        }
        let (start, load) = self.admission.finished(&function);
        self.metrics.set_load(&function, load.queued, load.running);
        self.start_queued(&function, start);
    }

    /// Claims queued execution `id` of `function` for this node and answers its record,
    /// now `starting`; or why not.
    async fn claim_to_run(&self, function: &str, id: Uuid, fresh: Option<Execution>) -> Claimed {
        if self.closing.load(Ordering::SeqCst) {
            // Stays queued for the next start; a caller waiting for it gets the record
            // as it is.
            if let Ok(Some(record)) = self.store.get_execution(id).await {
                self.notify(&record);
            }
            return Claimed::No;
        }
        let mut claim = self.claim();
        if self.settings.poll_results.is_some() {
            // Other nodes share the store: the function's bound holds for them all.
            claim.max_in_flight = match self.catalog.current(function).await {
                Ok(loaded) => Some(loaded.spec().max_in_flight()),
                Err(_) => Some(DEFAULT_MAX_IN_FLIGHT),
            };
        }
        let since = crate::telemetry::started();
        match self.store.claim(id, &claim).await {
            Ok(true) => {}
            Ok(false) if claim.max_in_flight.is_some() => return self.why_unclaimed(id).await,
            Ok(false) => return Claimed::No,
            Err(err) => {
                // Left queued: the next start (or another node) runs it.
                tracing::error!(execution = %id, "cannot claim the execution to run it: {err}");
                return Claimed::No;
            }
        }
        let mut execution = match fresh {
            Some(execution) => execution,
            None => match self.store.get_execution(id).await {
                Ok(Some(execution)) => {
                    if let Some(trace_id) = &execution.trace_id {
                        tracing::Span::current().record("trace_id", trace_id.as_str());
                    }
                    execution
                }
                Ok(None) => return Claimed::No,
                Err(err) => {
                    // Left claimed by this node: its next start settles it.
                    tracing::error!(execution = %id, "cannot load the execution to run it: {err}");
                    return Claimed::No;
                }
            },
        };
        execution.status = ExecutionStatus::Starting;
        execution.owner = Some(claim.owner);
        execution.lease_until = Some(claim.lease_until);
        crate::telemetry::claimed(since, &execution);
        Claimed::Yes(Box::new(execution))
    }

    /// A bounded claim was refused: at the limit if the execution still waits to run.
    async fn why_unclaimed(&self, id: Uuid) -> Claimed {
        match self.store.get_execution(id).await {
            Ok(Some(record))
                if record.status == ExecutionStatus::Queued
                    && record.run_at.is_none_or(|at| at <= crate::domain::now()) =>
            {
                Claimed::AtLimit
            }
            _ => Claimed::No,
        }
    }

    /// Puts `id` back at the head of `function`'s queue and starts nothing more of it
    /// here for [`CLAIM_RETRY`]: the slots are held on other nodes, which this one only
    /// learns by trying again.
    fn hold_back(self: &Arc<Self>, function: &str, id: Uuid) {
        self.admission.hold_back(function, id);
        let (this, function) = (self.clone(), function.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(CLAIM_RETRY).await;
            let (start, load) = this.admission.resume(&function);
            this.metrics.set_load(&function, load.queued, load.running);
            this.start_queued(&function, start);
        });
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
                let finished = outcome::error(
                    codes::SPAWN_ERROR,
                    format!("cannot load the function: {err}"),
                    None,
                );
                self.conclude(&mut execution, finished, None, None).await;
                self.notify(&execution);
                return;
            }
        };
        let secrets = match self.vault.resolve(&function.spec().secrets).await {
            Ok(secrets) => secrets,
            Err(err) => {
                let finished = outcome::error(
                    codes::SPAWN_ERROR,
                    format!("cannot read the function's secrets: {err}"),
                    None,
                );
                let ending = self
                    .conclude(&mut execution, finished, Some(&function), None)
                    .await;
                self.after(ending, &execution).await;
                return;
            }
        };
        let token = hex::encode(rand::random::<[u8; 32]>());
        let token_hash = hash_token(&token);
        let (reports_tx, reports) = mpsc::channel(4);
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
        let trace = [
            (env::TRACE_ID, &execution.trace_id),
            (env::TRACEPARENT, &execution.traceparent),
            (env::TRACESTATE, &execution.tracestate),
        ];
        for (name, value) in trace {
            if let Some(value) = value {
                launch_env.push((name.to_owned(), value.clone()));
            }
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
            &function.version.name,
            self.settings.log_cap_bytes,
            self.store.clone(),
            self.logs.clone(),
        );
        let sink = sink
            .masked(masker.clone())
            .keeping_last_line(self.settings.max_output_bytes + super::REPORT_ENVELOPE_BYTES);
        let started = Instant::now();
        let since = crate::telemetry::started();
        let launch = Launch {
            execution_id: id,
            function: function.version.clone(),
            env: launch_env,
            logs: sink,
        };
        let launched = self.runtime.start(launch).await;
        let start = if launched.is_ok() { "ready" } else { "failed" };
        let took = started.elapsed().as_secs_f64();
        self.metrics
            .instance_start(&function.version.name, start, took);
        let mut instance = match launched {
            Ok(instance) => instance,
            Err(err) => {
                let finished = outcome::error(codes::SPAWN_ERROR, err.to_string(), None);
                let ending = self
                    .conclude(&mut execution, finished, Some(&function), None)
                    .await;
                writer.finish().await;
                self.cleanup(id);
                self.after(ending, &execution).await;
                return;
            }
        };
        crate::telemetry::instance_started(since, &execution, instance.id(), true);
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
        let mut cold = ColdRun {
            instance,
            reports,
            masker,
            function: function.clone(),
        };
        let bounds = Bounds {
            cancel: &cancel,
            shutdown: &self.shutdown,
            limit: attempt::hard_limit(
                tokio::time::Instant::now() + Duration::from_millis(execution.timeout_ms),
            ),
            timeout_ms: execution.timeout_ms,
            instance: "instance",
            started,
        };
        let (finished, ack) = match attempt::drive(&mut cold, bounds).await {
            Ended::Finished(finished, ack) => (finished, ack),
            Ended::Refused(finished) => (finished, None),
            Ended::Abandoned => {
                writer.finish().await;
                self.cleanup(id);
                self.notify(&execution);
                return;
            }
        };
        crate::telemetry::ran(&execution, &finished);
        let ending = self
            .conclude(&mut execution, finished, Some(&function), ack)
            .await;
        // The result is final: a repeated or late report is answered at once (not
        // applied) instead of waiting until the instance is gone.
        refuse_reports(&mut cold.reports);
        // The report is durable; now let the instance exit and its output drain.
        if tokio::time::timeout(EXIT_AFTER_REPORT, cold.instance.wait())
            .await
            .is_err()
        {
            cold.instance.kill(STOP_GRACE).await;
        }
        drop(cold);
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
}

/// Closes an execution's report channel: later reports are answered at once as not
/// applied, and so are any already waiting in it.
fn refuse_reports(reports: &mut mpsc::Receiver<ReportDelivery>) {
    reports.close();
    while let Ok((_, ack)) = reports.try_recv() {
        let _ = ack.send(Recorded::AlreadyFinal);
    }
}
