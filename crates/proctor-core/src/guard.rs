//! Guardrails in a session of any protocol: each statement (or shell command) judged before it is
//! recorded and forwarded, the decision recorded, and a held one's wait for an approver.
//!
//! This module turns policy decisions into events (`policy.decision`, `approval`) and into
//! [`Refusal`]s and [`HoldNotice`]s that a protocol crate renders in its own error form (SQLSTATE
//! 42501 for PostgreSQL, error 1142 for MySQL). Where in the message stream those answers go is the
//! protocol's business; what the rules say is `proctor-policy`'s.

use std::borrow::Cow;
use std::future::Future;
use std::time::{Duration, Instant};

use proctor_journal::{ApprovalRow, ApprovalStatus, Body, CanonicalJson};
use proctor_policy::{Action, Decision, Guard, Request, RequestKind, DEFAULT_RULE};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedSender;

use crate::approvals::{Approvals, HoldRequest};
use crate::recorder::{RecordError, SessionRecorder};
use crate::{Identity, SessionSignal};

/// Why a statement was refused, for the protocol to choose its error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// A rule or an approver said no, or no approver decided in time.
    Denied,
    /// The client withdrew its held statement (it cancelled).
    Withdrawn,
}

/// A statement not forwarded, and what to tell the client.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
    pub hint: Option<String>,
}

impl Refusal {
    fn denied(message: String, hint: impl Into<String>) -> Self {
        Self {
            kind: RefusalKind::Denied,
            message,
            hint: Some(hint.into()),
        }
    }
}

/// What the client is told while its statement waits (a PostgreSQL NOTICE, a MySQL warning).
pub struct HoldNotice {
    pub message: String,
    pub hint: String,
}

/// What happens to one statement.
pub enum Verdict {
    /// Forward it; the note (what the guardrails decided) goes into its `db.query` event.
    Allow(Option<CanonicalJson>),
    /// Answer with this refusal instead; the decision is recorded.
    Refuse(Refusal),
    /// Wait for an approver.
    Hold(Decision),
}

/// A statement the guardrails hold: their decision, and the statement as recorded (masked) with the
/// findings of masking it.
pub struct Held {
    pub decision: Decision,
    pub sql: String,
    pub findings: Vec<Value>,
}

/// What the guardrails make of one statement's text.
pub enum Judgement<'t> {
    /// Forward it. `sql` is its text as recorded (masked), `findings` those of masking it, and
    /// `policy` the note for its `db.query`.
    Allow {
        sql: Cow<'t, str>,
        findings: Vec<Value>,
        policy: Option<CanonicalJson>,
    },
    /// Answer with this refusal instead; the decision is recorded.
    Refuse(Refusal),
    /// Wait for an approver ([`Guardrails::hold`]).
    Hold(Held),
}

/// A statement waiting for an approver.
pub struct Hold {
    pub id: String,
    started: Instant,
    deadline: Instant,
    decision: Decision,
}

/// One session's guardrails.
pub struct Guardrails {
    guard: Guard,
    identity: Identity,
    connection: String,
    approvals: Approvals,
    /// What the session's requests are: SQL in a dialect, or shell commands.
    kind: RequestKind,
    /// The outcome of the statement that was held, for when it is processed again.
    resolved: Option<Verdict>,
    /// An in-process caller's signals: it learns of a hold as a typed signal, not from the notice.
    signals: Option<UnboundedSender<SessionSignal>>,
}

fn flag_names(decision: &Decision) -> Value {
    let flags = decision
        .statement
        .as_ref()
        .map(|s| s.flags.iter().map(|f| Value::from(f.name())).collect())
        .unwrap_or_default();
    Value::Array(flags)
}

fn kind_name(decision: &Decision) -> &'static str {
    decision
        .statement
        .as_ref()
        .map_or("none", |s| s.kind.name())
}

/// What the session's requests are called, and where they go, in what the client is told.
fn nouns(kind: RequestKind) -> (&'static str, &'static str) {
    match kind {
        RequestKind::Command => ("command", "target"),
        RequestKind::Sql(_) | RequestKind::ToolCall => ("statement", "database"),
    }
}

fn refused(decision: &Decision, connection: &str, kind: RequestKind) -> Refusal {
    let (what, target) = nouns(kind);
    let why = decision
        .message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    Refusal::denied(
        format!("Proctor's guardrail \"{}\" denied this {what}{why}", decision.rule),
        format!(
            "Nothing was sent to the {target}. Rewrite the {what}, or ask the Proctor operators about the rules of connection \"{connection}\"."
        ),
    )
}

impl Guardrails {
    /// `kind` is what the session's requests are: SQL in a dialect, or shell commands.
    pub fn new(
        guard: Guard,
        kind: RequestKind,
        identity: Identity,
        connection: String,
        approvals: Approvals,
        signals: Option<UnboundedSender<SessionSignal>>,
    ) -> Self {
        Self {
            guard,
            identity,
            connection,
            approvals,
            kind,
            resolved: None,
            signals,
        }
    }

    /// Masks a statement's text for the journal and judges it. A refusal is recorded (queued: the
    /// caller commits before it answers).
    pub async fn judge_statement<'t>(
        &mut self,
        text: &'t str,
        recorder: &mut SessionRecorder,
    ) -> Result<Judgement<'t>, RecordError> {
        let (sql, findings) = recorder.mask(text, self.text_field());
        Ok(
            match self.judge_sql(text, &sql, &findings, recorder).await? {
                Verdict::Allow(policy) => Judgement::Allow {
                    sql,
                    findings,
                    policy,
                },
                Verdict::Refuse(refusal) => Judgement::Refuse(refusal),
                Verdict::Hold(decision) => Judgement::Hold(Held {
                    decision,
                    sql: sql.into_owned(),
                    findings,
                }),
            },
        )
    }

    /// Judges a text that must not be stored, even masked (a line typed while the terminal did not
    /// echo: perhaps a password): decisions record `recorded` in its place.
    pub async fn judge_unrecorded(
        &mut self,
        text: &str,
        recorded: &str,
        recorder: &mut SessionRecorder,
    ) -> Result<Judgement<'static>, RecordError> {
        Ok(match self.judge_sql(text, recorded, &[], recorder).await? {
            Verdict::Allow(policy) => Judgement::Allow {
                sql: Cow::Owned(recorded.to_owned()),
                findings: Vec::new(),
                policy,
            },
            Verdict::Refuse(refusal) => Judgement::Refuse(refusal),
            Verdict::Hold(decision) => Judgement::Hold(Held {
                decision,
                sql: recorded.to_owned(),
                findings: Vec::new(),
            }),
        })
    }

    /// Judges a SQL text (as sent) whose recorded form is `masked`.
    async fn judge_sql(
        &mut self,
        sql: &str,
        masked: &str,
        findings: &[Value],
        recorder: &mut SessionRecorder,
    ) -> Result<Verdict, RecordError> {
        if let Some(resolved) = self.resolved.take() {
            return Ok(resolved);
        }
        if !self.guard.policy().is_guarded() {
            return Ok(Verdict::Allow(None));
        }
        let decision = self.guard.judge(&Request {
            kind: self.kind,
            text: sql,
            target: &self.connection,
            identity: &self.identity.name,
            groups: &self.identity.groups,
        });
        self.verdict(decision, masked, findings, recorder).await
    }

    /// The field of `policy.decision` that holds the judged text.
    fn text_field(&self) -> &'static str {
        match self.kind {
            RequestKind::Command => "command",
            RequestKind::Sql(_) | RequestKind::ToolCall => "sql",
        }
    }

    /// Judges a command that carries no SQL to classify (a PostgreSQL fast-path function call, a
    /// MySQL file upload): a guarded connection refuses it under `rule`, saying `why`. `recorded` is
    /// what the decision records of the command, masked.
    pub async fn judge_unclassifiable(
        &mut self,
        rule: &str,
        why: &str,
        recorded: &str,
        recorder: &mut SessionRecorder,
    ) -> Result<Verdict, RecordError> {
        if !self.guard.policy().is_guarded() {
            return Ok(Verdict::Allow(None));
        }
        let decision = Decision {
            action: Action::Deny,
            rule: rule.into(),
            message: Some(why.into()),
            statement: None,
        };
        self.verdict(decision, recorded, &[], recorder).await
    }

    async fn verdict(
        &mut self,
        decision: Decision,
        masked: &str,
        findings: &[Value],
        recorder: &mut SessionRecorder,
    ) -> Result<Verdict, RecordError> {
        match decision.action {
            // Allowed by default: `session.start` names the connection's guardrails, so the absence
            // of a note is the record, and the commonest statement costs no extra bytes.
            Action::Allow if decision.rule.as_ref() == DEFAULT_RULE => Ok(Verdict::Allow(None)),
            Action::Allow => Ok(Verdict::Allow(Some(
                Body::new()
                    .str("action", "allow")
                    .value("flags", &flag_names(&decision))
                    .str("kind", kind_name(&decision))
                    .str("rule", &decision.rule)
                    .finish(),
            ))),
            Action::Deny => {
                let field = self.text_field();
                record_decision(recorder, &decision, None, (field, masked), findings).await?;
                Ok(Verdict::Refuse(refused(
                    &decision,
                    &self.connection,
                    self.kind,
                )))
            }
            Action::RequireApproval { .. } => Ok(Verdict::Hold(decision)),
        }
    }

    /// Opens the approval request for a held statement and records the decision (committed). Returns
    /// the hold and the notice that tells the client what it waits for.
    pub async fn hold(
        &mut self,
        held: Held,
        recorder: &mut SessionRecorder,
    ) -> Result<(Hold, HoldNotice), RecordError> {
        let Held {
            decision,
            sql: masked,
            findings,
        } = held;
        let (masked, findings) = (masked.as_str(), findings.as_slice());
        let (approvers, timeout): (Vec<String>, Duration) = match &decision.action {
            Action::RequireApproval { approvers, timeout } => (approvers.to_vec(), *timeout),
            Action::Allow | Action::Deny => (Vec::new(), Duration::ZERO),
        };
        let request = self
            .approvals
            .open(HoldRequest {
                session_id: recorder.header().session_id.clone(),
                identity: self.identity.name.clone(),
                connection: self.connection.clone(),
                statement: masked.to_owned(),
                rule: decision.rule.to_string(),
                kind: kind_name(&decision).to_owned(),
                flags: decision
                    .statement
                    .as_ref()
                    .map(|s| s.flags.iter().map(|f| f.name().to_owned()).collect())
                    .unwrap_or_default(),
                approvers: approvers.clone(),
                timeout,
            })
            .await?;
        let field = self.text_field();
        record_decision(
            recorder,
            &decision,
            Some(&request.id),
            (field, masked),
            findings,
        )
        .await?;
        recorder.commit().await?;
        let notice = HoldNotice {
            message: format!(
                "Proctor's guardrail \"{}\" holds this {} for approval: request {} (approvers: {}; waiting up to {} s)",
                decision.rule,
                nouns(self.kind).0,
                request.id,
                approvers.join(", "),
                timeout.as_secs()
            ),
            hint: format!(
                "An approver runs `proctor approvals approve {}` (or deny). {}",
                request.id,
                match self.kind {
                    RequestKind::Command => "Interrupt (Ctrl-C) or disconnect to withdraw it.",
                    RequestKind::Sql(_) | RequestKind::ToolCall => "Cancel the query to withdraw it.",
                }
            ),
        };
        if let Some(signals) = &self.signals {
            let _ = signals.send(SessionSignal::Held {
                request: request.id.clone(),
            });
        }
        let started = Instant::now();
        Ok((
            Hold {
                id: request.id,
                started,
                deadline: started + timeout,
                decision,
            },
            notice,
        ))
    }

    /// Waits for the hold to end: a decision, or its deadline (then it is marked timed out, unless
    /// an approver decided at the last moment). Owns what it needs, so the session can drop and
    /// remake it while it waits.
    pub fn outcome(&self, hold: &Hold) -> impl Future<Output = HoldEnd> + 'static {
        let approvals = self.approvals.clone();
        let (id, deadline) = (hold.id.clone(), hold.deadline);
        async move {
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return settle(
                        &approvals,
                        &id,
                        ApprovalStatus::TimedOut,
                        "no approver decided in time",
                    )
                    .await;
                }
                let poll = crate::approvals::POLL_INTERVAL.min(deadline - now);
                tokio::time::sleep(poll).await;
                if let Ok(row) = approvals.current(&id).await {
                    if row.status != ApprovalStatus::Pending {
                        return row.into();
                    }
                }
            }
        }
    }

    /// Withdraws a held statement (the client cancelled or left).
    pub async fn withdraw(&self, hold: &Hold, why: &str) -> HoldEnd {
        settle(&self.approvals, &hold.id, ApprovalStatus::Withdrawn, why).await
    }

    /// Records how the hold ended and keeps the verdict for when the statement is processed again.
    pub async fn resolve(
        &mut self,
        hold: Hold,
        end: HoldEnd,
        recorder: &mut SessionRecorder,
    ) -> Result<(), RecordError> {
        let waited_ms = hold.started.elapsed().as_millis() as u64;
        recorder
            .record_queued_masked(
                "approval",
                json!({"approval": hold.id, "by": end.by.as_deref(), "outcome": end.status.name(),
                       "reason": end.reason.as_deref(), "rule": &*hold.decision.rule,
                       "waited_ms": waited_ms}),
            )
            .await?;
        let by = end.by.as_deref().unwrap_or("?");
        let reason = end
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let target = nouns(self.kind).1;
        let verdict = match end.status {
            ApprovalStatus::Approved => Verdict::Allow(Some(
                Body::new()
                    .str("action", "require_approval")
                    .str("approval", &hold.id)
                    .str("approved_by", by)
                    .value("flags", &flag_names(&hold.decision))
                    .str("kind", kind_name(&hold.decision))
                    .str("rule", &hold.decision.rule)
                    .finish(),
            )),
            ApprovalStatus::Denied => Verdict::Refuse(Refusal::denied(
                format!("approval request {} was denied by {by}{reason}", hold.id),
                format!("Nothing was sent to the {target}."),
            )),
            ApprovalStatus::Withdrawn => Verdict::Refuse(Refusal {
                kind: RefusalKind::Withdrawn,
                message:
                    "canceling statement due to user request (its approval request was withdrawn)"
                        .into(),
                hint: None,
            }),
            ApprovalStatus::TimedOut | ApprovalStatus::Pending => Verdict::Refuse(Refusal::denied(
                format!(
                    "approval request {} timed out: no approver decided within {} s",
                    hold.id,
                    (hold.deadline - hold.started).as_secs()
                ),
                format!("Nothing was sent to the {target}. Ask an approver, then run it again."),
            )),
        };
        self.resolved = Some(verdict);
        Ok(())
    }
}

/// How a hold ended: the request's final status, who decided and why.
pub struct HoldEnd {
    status: ApprovalStatus,
    by: Option<String>,
    reason: Option<String>,
}

impl From<ApprovalRow> for HoldEnd {
    fn from(row: ApprovalRow) -> Self {
        Self {
            status: row.status,
            by: row.decided_by,
            reason: row.reason,
        }
    }
}

/// Ends a pending request without an approver; a store failure counts as the request's end too
/// (fail closed: the statement is refused).
async fn settle(approvals: &Approvals, id: &str, status: ApprovalStatus, why: &str) -> HoldEnd {
    match approvals.settle(id, status, why).await {
        Ok(row) => row.into(),
        Err(e) => HoldEnd {
            status,
            by: None,
            reason: Some(format!("the approval store failed: {e}")),
        },
    }
}

async fn record_decision(
    recorder: &mut SessionRecorder,
    decision: &Decision,
    approval: Option<&str>,
    (field, masked): (&'static str, &str),
    findings: &[Value],
) -> Result<(), RecordError> {
    let mut tables = Value::Array(
        decision
            .statement
            .as_ref()
            .map(|s| s.tables.iter().map(|t| Value::from(t.as_str())).collect())
            .unwrap_or_default(),
    );
    // Table names come from the statement: a quoted name can hold anything its text can.
    let mut findings = findings.to_vec();
    findings.extend(recorder.mask_value(&mut tables, "sql"));
    // Keys in canonical (sorted) order: a command sorts before `flags`, a statement after `rule`.
    let (command, sql) = match field {
        "command" => (Some(masked), None),
        _ => (None, Some(masked)),
    };
    let body = Body::new()
        .str("action", decision.action.name())
        .opt_str("approval", approval)
        .opt_str("command", command)
        .value("flags", &flag_names(decision))
        .str("kind", kind_name(decision))
        .opt_str("message", decision.message.as_deref())
        .str("rule", &decision.rule)
        .opt_str("sql", sql)
        .value("tables", &tables)
        .finish();
    recorder
        .record_queued_with("policy.decision", body, findings)
        .await?;
    Ok(())
}
