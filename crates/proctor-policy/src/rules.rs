//! Rules: what a connection's guardrails decide about one request.
//!
//! A request is protocol-neutral (what kind of text, the text, the target, who sends it), so the same
//! engine judges SQL statements, shell commands and agent tool calls. For SQL, each statement of the
//! text is judged on its own and the most severe answer wins (deny, then hold, then allow).
//!
//! Order of judgement: a read-only connection refuses anything but reads first (no rule can lift
//! that); then the connection's own rules, first match wins; then the preset's; then, on a guarded
//! connection, text that does not parse is refused; then the default action.

use std::sync::Arc;
use std::time::Duration;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::classify::{Classification, Classifier, Dialect, Flag, Flags, Kind, StatementClass};

/// Longest a statement may wait for approval.
pub const MAX_APPROVAL_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Approval timeout when neither the rule nor the connection sets one.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(600);
/// The name decisions carry when no rule matched.
pub const DEFAULT_RULE: &str = "default";
/// Who approves what a rule holds when neither the rule nor the connection says.
pub const DEFAULT_APPROVERS: &str = "group:dba";
const MAX_REGEX_BYTES: usize = 1 << 20;

/// What kind of text a request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    Sql(Dialect),
    /// A shell command line.
    Command,
    /// An agent's tool call, as text.
    ToolCall,
}

/// One thing someone wants to run.
pub struct Request<'a> {
    pub kind: RequestKind,
    pub text: &'a str,
    /// The connection it is for.
    pub target: &'a str,
    pub identity: &'a str,
    pub groups: &'a [String],
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionName {
    #[default]
    Allow,
    Deny,
    RequireApproval,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
    RequireApproval {
        approvers: Arc<[String]>,
        timeout: Duration,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::RequireApproval { .. } => "require_approval",
        }
    }

    fn severity(&self) -> u8 {
        match self {
            Action::Allow => 0,
            Action::RequireApproval { .. } => 1,
            Action::Deny => 2,
        }
    }
}

/// A rule as written in the configuration. Every condition given must hold; within a list, any entry
/// may match. A rule with no condition matches everything.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    /// Statement kinds: read, write, ddl, dcl, transaction, admin, unparsed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Statement flags, any of: delete_without_where, update_without_where, drop, drop_database,
    /// truncate, alter, grant, revoke, copy_program, multi_statement, read_write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// Globs over the tables a statement names (`public.*`, `users`); a glob without a dot also
    /// matches the table name without its schema. Case-insensitive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// A regular expression the request's text must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Who it applies to: identity names, `group:NAME`, `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<String>,
    pub action: ActionName,
    /// For `require_approval`: identity names or `group:NAME` that may approve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// For `require_approval`: how long the statement waits before it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Said to the client when the rule denies or holds, after the rule's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Ready-made rule sets, turned on with one line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    #[default]
    Off,
    /// Deny DROP DATABASE, TRUNCATE, DELETE/UPDATE without WHERE and COPY ... PROGRAM; hold DDL and
    /// DCL for approval.
    Recommended,
}

impl Preset {
    fn rules(self) -> Vec<RuleSpec> {
        let deny = |name: &str, flag: Flag, message: &str| RuleSpec {
            name: name.into(),
            flags: vec![flag.name().into()],
            action: ActionName::Deny,
            message: Some(message.into()),
            ..RuleSpec::default()
        };
        let hold = |name: &str, kind: Kind| RuleSpec {
            name: name.into(),
            kinds: vec![kind.name().into()],
            action: ActionName::RequireApproval,
            ..RuleSpec::default()
        };
        match self {
            Preset::Off => Vec::new(),
            Preset::Recommended => vec![
                deny(
                    "recommended/deny-drop-database",
                    Flag::DropDatabase,
                    "dropping a database is not allowed through Proctor",
                ),
                deny(
                    "recommended/deny-truncate",
                    Flag::Truncate,
                    "TRUNCATE is not allowed; delete rows with a WHERE clause instead",
                ),
                deny(
                    "recommended/deny-delete-without-where",
                    Flag::DeleteWithoutWhere,
                    "DELETE without WHERE would remove every row; add a WHERE clause",
                ),
                deny(
                    "recommended/deny-update-without-where",
                    Flag::UpdateWithoutWhere,
                    "UPDATE without WHERE would change every row; add a WHERE clause",
                ),
                deny(
                    "recommended/deny-copy-program",
                    Flag::CopyProgram,
                    "COPY ... PROGRAM runs commands on the database host and is not allowed",
                ),
                hold("recommended/hold-ddl", Kind::Ddl),
                hold("recommended/hold-dcl", Kind::Dcl),
            ],
        }
    }
}

/// A connection's guardrails as configured.
#[derive(Clone, Debug, Default)]
pub struct PolicySpec {
    pub preset: Preset,
    pub read_only: bool,
    pub rules: Vec<RuleSpec>,
    /// Approvers of held statements whose rule names none.
    pub approvers: Vec<String>,
    pub approval_timeout: Option<Duration>,
    /// What happens when no rule matches: allow or deny.
    pub default_action: ActionName,
}

/// A rule that could not be compiled: the field at fault (`rules[2].kinds`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RuleError {
    pub field: String,
    pub reason: String,
}

#[derive(Debug)]
struct Rule {
    name: Arc<str>,
    kinds: Vec<Kind>,
    flags: Flags,
    tables: Option<GlobSet>,
    regex: Option<Regex>,
    identities: Vec<String>,
    action: Action,
    message: Option<Arc<str>>,
}

/// What the guardrails decided about a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// The rule that decided: its name, or `default`.
    pub rule: Arc<str>,
    /// What to tell the client, when the rule says.
    pub message: Option<Arc<str>>,
    /// The statement that decided (for SQL), classified.
    pub statement: Option<StatementClass>,
}

/// The compiled guardrails of one connection.
#[derive(Debug)]
pub struct Policy {
    read_only: bool,
    rules: Vec<Rule>,
    default: Action,
    default_rule: Arc<str>,
}

fn principal_valid(entry: &str) -> bool {
    let name = entry.strip_prefix("group:").unwrap_or(entry);
    entry == "*"
        || (!name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')))
}

fn principal_matches(entries: &[String], identity: &str, groups: &[String]) -> bool {
    entries.iter().any(|entry| {
        entry == "*"
            || entry == identity
            || entry
                .strip_prefix("group:")
                .is_some_and(|group| groups.iter().any(|g| g == group))
    })
}

/// May this identity approve what `approvers` names?
pub fn may_approve(approvers: &[String], identity: &str, groups: &[String]) -> bool {
    principal_matches(approvers, identity, groups)
}

impl Rule {
    fn compile(spec: &RuleSpec, at: &str, defaults: &PolicySpec) -> Result<Rule, RuleError> {
        let fail = |field: &str, reason: String| RuleError {
            field: format!("{at}.{field}"),
            reason,
        };
        if spec.name.trim().is_empty() {
            return Err(fail("name", "give the rule a name".into()));
        }
        let kinds = spec
            .kinds
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Kind::from_name(k).ok_or_else(|| {
                    let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                    fail(
                        &format!("kinds[{i}]"),
                        format!("unknown kind {k:?}; use one of {}", known.join(", ")),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut flags = Flags::default();
        for (i, name) in spec.flags.iter().enumerate() {
            let flag = Flag::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = Flag::ALL.iter().map(|f| f.name()).collect();
                fail(
                    &format!("flags[{i}]"),
                    format!("unknown flag {name:?}; use one of {}", known.join(", ")),
                )
            })?;
            flags.insert(flag);
        }
        let tables = if spec.tables.is_empty() {
            None
        } else {
            let mut set = GlobSetBuilder::new();
            for (i, pattern) in spec.tables.iter().enumerate() {
                let glob = GlobBuilder::new(pattern)
                    .case_insensitive(true)
                    .literal_separator(false)
                    .build()
                    .map_err(|e| fail(&format!("tables[{i}]"), e.kind().to_string()))?;
                set.add(glob);
            }
            Some(set.build().map_err(|e| fail("tables", e.to_string()))?)
        };
        let regex = spec
            .regex
            .as_deref()
            .map(|pattern| {
                RegexBuilder::new(pattern)
                    .size_limit(MAX_REGEX_BYTES)
                    .build()
                    .map_err(|e| fail("regex", e.to_string()))
            })
            .transpose()?;
        for (i, entry) in spec.identities.iter().enumerate() {
            if !principal_valid(entry) {
                return Err(fail(
                    &format!("identities[{i}]"),
                    format!("{entry:?} is not an identity name, group:NAME or *"),
                ));
            }
        }
        let action = match spec.action {
            ActionName::Allow | ActionName::Deny => {
                if !spec.approvers.is_empty() || spec.timeout_secs.is_some() {
                    return Err(fail(
                        "approvers",
                        "approvers and timeout_secs apply to action = \"require_approval\" only"
                            .into(),
                    ));
                }
                if spec.action == ActionName::Allow {
                    Action::Allow
                } else {
                    Action::Deny
                }
            }
            ActionName::RequireApproval => {
                let approvers = if !spec.approvers.is_empty() {
                    spec.approvers.clone()
                } else if !defaults.approvers.is_empty() {
                    defaults.approvers.clone()
                } else {
                    vec![DEFAULT_APPROVERS.to_owned()]
                };
                for (i, entry) in approvers.iter().enumerate() {
                    if !principal_valid(entry) || entry == "*" {
                        return Err(fail(
                            &format!("approvers[{i}]"),
                            format!("{entry:?} is not an identity name or group:NAME"),
                        ));
                    }
                }
                let timeout = match spec.timeout_secs {
                    Some(secs) => Duration::from_secs(secs),
                    None => defaults
                        .approval_timeout
                        .unwrap_or(DEFAULT_APPROVAL_TIMEOUT),
                };
                if timeout.is_zero() || timeout > MAX_APPROVAL_TIMEOUT {
                    return Err(fail(
                        "timeout_secs",
                        format!(
                            "must be between 1 and {} seconds",
                            MAX_APPROVAL_TIMEOUT.as_secs()
                        ),
                    ));
                }
                Action::RequireApproval {
                    approvers: approvers.into(),
                    timeout,
                }
            }
        };
        Ok(Rule {
            name: spec.name.as_str().into(),
            kinds,
            flags,
            tables,
            regex,
            identities: spec.identities.clone(),
            action,
            message: spec.message.as_deref().map(Arc::from),
        })
    }

    fn matches(&self, request: &Request<'_>, statement: Option<&StatementClass>) -> bool {
        if !self.kinds.is_empty() && !statement.is_some_and(|s| self.kinds.contains(&s.kind)) {
            return false;
        }
        if !self.flags.is_empty() && !statement.is_some_and(|s| s.flags.intersects(self.flags)) {
            return false;
        }
        if let Some(globs) = &self.tables {
            let touched = statement.is_some_and(|s| {
                s.tables.iter().any(|table| {
                    globs.is_match(table)
                        || table
                            .rsplit_once('.')
                            .is_some_and(|(_, bare)| globs.is_match(bare))
                })
            });
            if !touched {
                return false;
            }
        }
        if !self.identities.is_empty()
            && !principal_matches(&self.identities, request.identity, request.groups)
        {
            return false;
        }
        if let Some(regex) = &self.regex {
            if !regex.is_match(request.text) {
                return false;
            }
        }
        true
    }
}

impl Policy {
    /// Compiles a connection's guardrails; errors name the rule's field.
    pub fn new(spec: &PolicySpec) -> Result<Policy, RuleError> {
        let mut rules = Vec::new();
        for (i, rule) in spec.rules.iter().enumerate() {
            rules.push(Rule::compile(rule, &format!("rules[{i}]"), spec)?);
        }
        for rule in spec.preset.rules() {
            rules.push(Rule::compile(&rule, "guardrails", spec)?);
        }
        if let Some(approvers) = spec
            .approvers
            .iter()
            .find(|a| !principal_valid(a) || *a == "*")
        {
            return Err(RuleError {
                field: "approvers".into(),
                reason: format!("{approvers:?} is not an identity name or group:NAME"),
            });
        }
        let default = match spec.default_action {
            ActionName::Allow => Action::Allow,
            ActionName::Deny => Action::Deny,
            ActionName::RequireApproval => {
                return Err(RuleError {
                    field: "default_action".into(),
                    reason: "use allow or deny (hold with a rule instead)".into(),
                })
            }
        };
        Ok(Policy {
            read_only: spec.read_only,
            rules,
            default,
            default_rule: DEFAULT_RULE.into(),
        })
    }

    /// A policy that refuses everything: the fail-closed stand-in for rules that cannot be compiled.
    pub fn deny_all() -> Policy {
        Policy {
            read_only: false,
            rules: Vec::new(),
            default: Action::Deny,
            default_rule: DEFAULT_RULE.into(),
        }
    }

    /// Whether anything is checked at all: rules, a preset, read-only, or a deny default.
    pub fn is_guarded(&self) -> bool {
        self.read_only || !self.rules.is_empty() || self.default != Action::Allow
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// What a session's record says of its guardrails: read-only, the rules in order, and the
    /// default action.
    pub fn summary(&self) -> (bool, Vec<&str>, &'static str) {
        let rules = self.rules.iter().map(|r| r.name.as_ref()).collect();
        (self.read_only, rules, self.default.name())
    }

    /// Judges a request; for SQL, `classification` holds its statements.
    pub fn decide(
        &self,
        request: &Request<'_>,
        classification: Option<&Classification>,
    ) -> Decision {
        let statements = classification.map_or(&[][..], |c| c.statements.as_slice());
        if statements.is_empty() {
            return self.judge(request, None);
        }
        let mut worst: Option<Decision> = None;
        for statement in statements {
            let decision = self.judge(request, Some(statement));
            if worst
                .as_ref()
                .is_none_or(|w| decision.action.severity() > w.action.severity())
            {
                let deny = decision.action == Action::Deny;
                worst = Some(decision);
                if deny {
                    break;
                }
            }
        }
        worst.unwrap_or_else(|| self.judge(request, None))
    }

    fn judge(&self, request: &Request<'_>, statement: Option<&StatementClass>) -> Decision {
        let decided = |action: Action, rule: Arc<str>, message: Option<Arc<str>>| Decision {
            action,
            rule,
            message,
            statement: statement.cloned(),
        };
        if self.read_only {
            if let Some(class) = statement {
                let writes = matches!(
                    class.kind,
                    Kind::Write | Kind::Ddl | Kind::Dcl | Kind::Unparsed
                ) || class.flags.contains(Flag::ReadWrite);
                if writes {
                    return decided(
                        Action::Deny,
                        "read-only".into(),
                        Some(
                            format!(
                                "connection {:?} is read-only and this statement is {}",
                                request.target,
                                describe(class)
                            )
                            .into(),
                        ),
                    );
                }
            }
        }
        if let Some(rule) = self.rules.iter().find(|r| r.matches(request, statement)) {
            return decided(rule.action.clone(), rule.name.clone(), rule.message.clone());
        }
        if self.is_guarded() && statement.is_some_and(|s| s.kind == Kind::Unparsed) {
            return decided(
                Action::Deny,
                "unparsed".into(),
                Some(
                    "Proctor could not parse this statement, and a guarded connection refuses what it cannot classify"
                        .into(),
                ),
            );
        }
        decided(self.default.clone(), self.default_rule.clone(), None)
    }
}

fn describe(class: &StatementClass) -> String {
    let flags: Vec<&str> = class.flags.iter().map(Flag::name).collect();
    if flags.is_empty() {
        format!("a {} statement", class.kind.name())
    } else {
        format!("a {} statement ({})", class.kind.name(), flags.join(", "))
    }
}

/// One session's guardrails: the connection's policy and a classifier that remembers the session's
/// statements.
pub struct Guard {
    policy: Arc<Policy>,
    classifier: Classifier,
}

impl Guard {
    pub fn new(policy: Arc<Policy>, dialect: Dialect) -> Self {
        Self {
            policy,
            classifier: Classifier::new(dialect),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Classifies and judges a request. An unguarded connection skips classification.
    pub fn judge(&mut self, request: &Request<'_>) -> Decision {
        if !self.policy.is_guarded() {
            return self.policy.judge(request, None);
        }
        match request.kind {
            RequestKind::Sql(_) => {
                let classification = self.classifier.classify(request.text);
                self.policy.decide(request, Some(&classification))
            }
            RequestKind::Command | RequestKind::ToolCall => self.policy.decide(request, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_rules: &str) -> Vec<RuleSpec> {
        #[derive(Deserialize)]
        struct Rules {
            rules: Vec<RuleSpec>,
        }
        toml::from_str::<Rules>(toml_rules).unwrap().rules
    }

    fn guard(spec: PolicySpec) -> Guard {
        Guard::new(Arc::new(Policy::new(&spec).unwrap()), Dialect::Postgres)
    }

    fn sql<'a>(text: &'a str, identity: &'a str, groups: &'a [String]) -> Request<'a> {
        Request {
            kind: RequestKind::Sql(Dialect::Postgres),
            text,
            target: "app-db",
            identity,
            groups,
        }
    }

    fn verdict(guard: &mut Guard, text: &str) -> (String, String) {
        let decision = guard.judge(&sql(text, "alice", &[]));
        (decision.action.name().into(), decision.rule.to_string())
    }

    #[test]
    fn recommended_preset() {
        let mut g = guard(PolicySpec {
            preset: Preset::Recommended,
            ..PolicySpec::default()
        });
        let deny = |rule: &str| ("deny".to_string(), format!("recommended/{rule}"));
        assert_eq!(
            verdict(&mut g, "DROP DATABASE prod"),
            deny("deny-drop-database")
        );
        assert_eq!(verdict(&mut g, "TRUNCATE t"), deny("deny-truncate"));
        assert_eq!(
            verdict(&mut g, "DELETE FROM t"),
            deny("deny-delete-without-where")
        );
        assert_eq!(
            verdict(&mut g, "update t set a = 1"),
            deny("deny-update-without-where")
        );
        assert_eq!(
            verdict(&mut g, "COPY t TO PROGRAM 'sh'"),
            deny("deny-copy-program")
        );
        assert_eq!(
            verdict(&mut g, "ALTER TABLE t ADD c int"),
            ("require_approval".into(), "recommended/hold-ddl".into())
        );
        assert_eq!(
            verdict(&mut g, "DROP TABLE t"),
            ("require_approval".into(), "recommended/hold-ddl".into())
        );
        for allowed in [
            "SELECT 1",
            "DELETE FROM t WHERE id = 3",
            "BEGIN",
            "SET work_mem = '1MB'",
        ] {
            assert_eq!(
                verdict(&mut g, allowed),
                ("allow".into(), "default".into()),
                "{allowed}"
            );
        }
        assert_eq!(
            verdict(&mut g, "DO $$ BEGIN END $$"),
            ("deny".into(), "unparsed".into())
        );
        let held = g.judge(&sql("CREATE INDEX ON t (a)", "alice", &[]));
        assert_eq!(
            held.action,
            Action::RequireApproval {
                approvers: vec!["group:dba".to_string()].into(),
                timeout: DEFAULT_APPROVAL_TIMEOUT
            }
        );
    }

    #[test]
    fn the_worst_statement_of_a_text_decides() {
        let mut g = guard(PolicySpec {
            preset: Preset::Recommended,
            ..PolicySpec::default()
        });
        assert_eq!(
            verdict(&mut g, "SELECT 1; ALTER TABLE t ADD c int; DELETE FROM t"),
            (
                "deny".into(),
                "recommended/deny-delete-without-where".into()
            )
        );
        assert_eq!(
            verdict(&mut g, "SELECT 1; CREATE TABLE u (a int)"),
            ("require_approval".into(), "recommended/hold-ddl".into())
        );
    }

    #[test]
    fn own_rules_come_first_and_match_on_everything() {
        let rules = spec(
            r#"
            [[rules]]
            name = "dba-may-alter"
            kinds = ["ddl"]
            identities = ["group:dba"]
            action = "allow"
            [[rules]]
            name = "no-payroll"
            tables = ["payroll.*", "salaries"]
            action = "deny"
            message = "payroll data is off limits"
            [[rules]]
            name = "no-pg-sleep"
            regex = "(?i)pg_sleep"
            action = "deny"
            "#,
        );
        let mut g = guard(PolicySpec {
            preset: Preset::Recommended,
            rules,
            ..PolicySpec::default()
        });
        let dba = ["dba".to_string()];
        assert_eq!(
            g.judge(&sql("ALTER TABLE t ADD c int", "bob", &dba))
                .rule
                .as_ref(),
            "dba-may-alter"
        );
        assert_eq!(
            g.judge(&sql("ALTER TABLE t ADD c int", "alice", &[]))
                .rule
                .as_ref(),
            "recommended/hold-ddl"
        );
        let payroll = g.judge(&sql("SELECT * FROM payroll.runs", "alice", &[]));
        assert_eq!(payroll.action, Action::Deny);
        assert_eq!(
            payroll.message.as_deref(),
            Some("payroll data is off limits")
        );
        assert_eq!(
            verdict(&mut g, "select * from public.SALARIES").1,
            "no-payroll"
        );
        assert_eq!(
            verdict(&mut g, "select * from \"salaries_archive\"").1,
            "default"
        );
        assert_eq!(verdict(&mut g, "SELECT PG_SLEEP(1)").1, "no-pg-sleep");
    }

    #[test]
    fn read_only_refuses_writes_whatever_the_rules_say() {
        let rules = spec("[[rules]]\nname = \"anything\"\naction = \"allow\"\n");
        let mut g = guard(PolicySpec {
            read_only: true,
            rules,
            ..PolicySpec::default()
        });
        for text in [
            "INSERT INTO t VALUES (1)",
            "CREATE TABLE x (a int)",
            "GRANT SELECT ON t TO x",
            "BEGIN READ WRITE",
            "SET default_transaction_read_only = off",
            "SELECT set_config('default_transaction_read_only', 'off', false)",
            "DO $$ BEGIN END $$",
        ] {
            assert_eq!(verdict(&mut g, text).1, "read-only", "{text}");
        }
        for text in [
            "SELECT * FROM t",
            "BEGIN",
            "SHOW work_mem",
            "COPY t TO STDOUT",
        ] {
            assert_eq!(verdict(&mut g, text).0, "allow", "{text}");
        }
    }

    #[test]
    fn requests_of_other_protocols_use_the_same_rules() {
        let rules = spec(
            "[[rules]]\nname = \"no-rm\"\nregex = \"\\\\brm\\\\s+-rf\\\\b\"\naction = \"deny\"\n",
        );
        let mut g = guard(PolicySpec {
            rules,
            ..PolicySpec::default()
        });
        let command = |text| Request {
            kind: RequestKind::Command,
            text,
            target: "web-1",
            identity: "alice",
            groups: &[],
        };
        assert_eq!(
            g.judge(&command("sudo rm -rf /var/lib")).action,
            Action::Deny
        );
        assert_eq!(g.judge(&command("ls -la")).action, Action::Allow);
    }

    #[test]
    fn invalid_rules_name_their_field() {
        let bad = |toml: &str| {
            Policy::new(&PolicySpec {
                rules: spec(toml),
                ..PolicySpec::default()
            })
            .err()
            .unwrap()
            .to_string()
        };
        let e = bad("[[rules]]\nname = \"a\"\naction = \"allow\"\n[[rules]]\nname = \"b\"\nkinds = [\"reed\"]\naction = \"deny\"\n");
        assert!(
            e.starts_with("rules[1].kinds[0]: unknown kind \"reed\""),
            "{e}"
        );
        let e = bad("[[rules]]\nname = \"a\"\nflags = [\"dropp\"]\naction = \"deny\"\n");
        assert!(e.starts_with("rules[0].flags[0]: unknown flag"), "{e}");
        let e = bad("[[rules]]\nname = \"a\"\nregex = \"(\"\naction = \"deny\"\n");
        assert!(e.starts_with("rules[0].regex:"), "{e}");
        let e = bad("[[rules]]\nname = \"a\"\ntables = [\"a[\"]\naction = \"deny\"\n");
        assert!(e.starts_with("rules[0].tables[0]:"), "{e}");
        let e = bad("[[rules]]\nname = \"a\"\naction = \"deny\"\napprovers = [\"bob\"]\n");
        assert!(e.starts_with("rules[0].approvers:"), "{e}");
        let e = bad("[[rules]]\nname = \"a\"\naction = \"require_approval\"\ntimeout_secs = 0\n");
        assert!(e.starts_with("rules[0].timeout_secs:"), "{e}");
        let e = bad("[[rules]]\nname = \"a\"\nidentities = [\"bad name\"]\naction = \"deny\"\n");
        assert!(e.starts_with("rules[0].identities[0]:"), "{e}");
    }

    #[test]
    fn approvers_by_name_or_group() {
        let approvers = ["group:dba".to_string(), "carol".to_string()];
        assert!(may_approve(&approvers, "bob", &["dba".into()]));
        assert!(may_approve(&approvers, "carol", &[]));
        assert!(!may_approve(&approvers, "alice", &["dev".into()]));
    }
}
