//! Proctor's guardrails: what a statement is ([`classify`]) and what a connection's rules decide about
//! it ([`rules`]). Pure: no I/O. Holding a statement for approval, and recording decisions, is the
//! gateway's job; this crate only says which it is.

pub mod classify;
pub mod rules;

pub use classify::{Classification, Classifier, Dialect, Flag, Flags, Kind, StatementClass};
pub use rules::{
    may_approve, Action, ActionName, Decision, Guard, Policy, PolicySpec, Preset, Request,
    RequestKind, RuleError, RuleSpec, DEFAULT_APPROVERS, DEFAULT_RULE,
};
