//! What every SQL protocol records of a result as it streams by: row and byte counts, a sample of
//! rows masked before it is cut to its budget, column names masked like anything the target sends,
//! the masking of cells on their way to the client, and the `db.result` event that sums it up.
//!
//! A protocol crate decodes its own rows (PostgreSQL's DataRow, MySQL's text and binary rows) into
//! cells and hands them here; it owns framing and type decoding, this module owns what is kept of
//! them and how they are masked. Nothing here does I/O.

use std::borrow::Cow;
use std::time::Instant;

use proctor_journal::Body;
use proctor_mask::columns::ColumnRule;
use serde_json::{json, Value};

use crate::recorder::{RecordError, SessionRecorder};

/// How far past its cut a value is decoded, so that masking sees whole any secret that the cut would
/// split; the value is cut after masking ([`cut_strings`]). A secret longer than this (a private key
/// is the only one) is masked by its detector's rule for a key cut short.
pub const MASK_LOOKAHEAD: usize = 16 * 1024;
/// Findings of masking the client's copy of one result that the event keeps (the rest are counted).
const MAX_CLIENT_FINDINGS: usize = 100;
/// Notices (PostgreSQL) or warnings attached to one result.
const MAX_NOTICES: usize = 10;

/// What a session keeps of results, and whether the client's copy is masked too.
#[derive(Clone, Debug, Default)]
pub struct ResultLimits {
    /// Rows of each result kept as a sample in the journal.
    pub sample_rows: usize,
    /// Bytes of each result kept as a sample in the journal.
    pub sample_bytes: usize,
    /// Mask result cells on their way to the client too, not only in the journal.
    pub mask_client: bool,
    /// Columns masked by name.
    pub column_rules: Vec<ColumnRule>,
}

impl ResultLimits {
    /// The index of the rule that masks column `name` of `table`: `None` when the protocol cannot
    /// tell the table (then a rule matches by column name alone), `Some("")` when the column belongs
    /// to no table.
    fn column_rule(&self, table: Option<&str>, name: &str) -> Option<usize> {
        self.column_rules
            .iter()
            .position(|rule| rule.matches(table, name))
    }
}

/// A result column as the journal records it.
#[derive(Clone, Debug)]
pub struct RecordedColumn {
    /// The name as the target sent it, for column rules.
    pub name: String,
    /// The name as the journal records it: masked, like anything the target sends.
    pub recorded_name: String,
    /// The findings of masking the name, recorded with each result that has this column.
    pub name_findings: Vec<Value>,
    /// The column rule that masks this column, if any (an index into `ResultLimits::column_rules`).
    pub rule: Option<usize>,
}

impl AsRef<RecordedColumn> for RecordedColumn {
    fn as_ref(&self) -> &RecordedColumn {
        self
    }
}

impl RecordedColumn {
    /// A column named `name`, of `table` where the protocol knows it (see [`ResultLimits::column_rule`]).
    pub fn new(
        name: String,
        table: Option<&str>,
        limits: &ResultLimits,
        recorder: &SessionRecorder,
    ) -> Self {
        let rule = limits.column_rule(table, &name);
        let (recorded, name_findings) = recorder.mask(&name, "columns");
        let recorded_name = match recorded {
            Cow::Owned(masked) => masked,
            Cow::Borrowed(_) => name.clone(),
        };
        Self {
            name,
            recorded_name,
            name_findings,
            rule,
        }
    }
}

/// What masking the client's copy of a result did, for its `db.result` event.
#[derive(Default)]
struct ClientMasking {
    cells: u64,
    /// Binary cells of non-text types that held a secret: sent as NULL, since they cannot be masked
    /// in place.
    nulled: u64,
    /// Why some data reached the client unmasked (binary COPY data), if any did.
    unmasked: Option<&'static str>,
    findings: Vec<Value>,
}

/// How a result ended, as the protocol reports it.
pub struct ResultEnd<'a> {
    /// Rows returned or affected.
    pub rows: u64,
    /// The command tag (PostgreSQL) or the kind of answer (MySQL's `OK`, `rows`).
    pub tag: &'a str,
    /// A portal suspended by its row limit (PostgreSQL).
    pub suspended: bool,
    /// The id an insert generated (MySQL), if not zero.
    pub last_insert_id: Option<u64>,
    /// How many warnings the statement raised (MySQL), if any.
    pub warnings: Option<u64>,
}

/// One command's result as it streams by, until its `db.result` is recorded.
pub struct ResultRecord {
    /// The `db.query` event this result answers.
    pub query_seq: u64,
    started: Instant,
    rows: u64,
    bytes: u64,
    sample: Vec<Value>,
    sample_bytes: usize,
    sample_truncated: bool,
    /// The sample is of data messages (COPY), not rows: no truncation flag.
    sample_of_data: bool,
    notices: Vec<Value>,
    /// Findings of the sample: column rules, masking, COPY lines.
    sample_findings: Vec<Value>,
    client_masking: ClientMasking,
}

impl ResultRecord {
    pub fn new(query_seq: u64) -> Self {
        Self {
            query_seq,
            started: Instant::now(),
            rows: 0,
            bytes: 0,
            sample: Vec::new(),
            sample_bytes: 0,
            sample_truncated: false,
            sample_of_data: false,
            notices: Vec::new(),
            sample_findings: Vec::new(),
            client_masking: ClientMasking::default(),
        }
    }

    /// Starts over for the next statement of the same command (a multi-statement query).
    pub fn restart(&mut self) {
        *self = Self::new(self.query_seq);
    }

    /// Counts a row of `bytes` bytes. Returns the sample budget left when the row should be
    /// sampled, `None` when the sample is full.
    pub fn count_row(&mut self, bytes: usize, limits: &ResultLimits) -> Option<usize> {
        self.rows += 1;
        self.bytes += bytes as u64;
        if self.sample.len() >= limits.sample_rows || self.sample_bytes >= limits.sample_bytes {
            self.sample_truncated = true;
            return None;
        }
        Some(limits.sample_bytes - self.sample_bytes)
    }

    /// Counts a row too large to sample: the sample is marked as cut.
    pub fn count_unsampled_row(&mut self, bytes: usize) {
        self.rows += 1;
        self.bytes += bytes as u64;
        self.sample_truncated = true;
    }

    /// Microseconds since the command was sent.
    pub fn duration_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// One cell of a sampled row, decoded by the protocol from `raw_len` bytes on the wire (with
    /// [`MASK_LOOKAHEAD`] bytes past `budget`): masked by its column's rule or by the detectors,
    /// then cut to `budget`.
    pub fn sample_cell(
        &mut self,
        decoded: Value,
        raw_len: Option<usize>,
        rule: Option<&ColumnRule>,
        budget: usize,
        recorder: &SessionRecorder,
    ) -> Value {
        self.sample_bytes += raw_len.unwrap_or(4);
        let mut cell = match (rule, decoded) {
            (Some(rule), Value::String(text)) => {
                let (shown, finding) = recorder.mask_column(rule, &text, "sample");
                self.sample_findings.push(finding);
                Value::String(shown)
            }
            (Some(rule), other) if !other.is_null() => {
                let (shown, finding) = recorder.mask_column(rule, &other.to_string(), "sample");
                self.sample_findings.push(finding);
                Value::String(shown)
            }
            (_, mut decoded) => {
                self.sample_findings
                    .extend(recorder.mask_value(&mut decoded, "sample"));
                decoded
            }
        };
        cut_strings(&mut cell, budget);
        cell
    }

    /// Adds a sampled row, its cells made by [`Self::sample_cell`].
    pub fn push_sample_row(&mut self, row: Vec<Value>) {
        self.sample.push(Value::Array(row));
    }

    /// Replaces the sample with data messages (COPY lines), already masked, with their findings.
    pub fn set_data_sample(&mut self, bytes: u64, sample: Vec<Value>, findings: Vec<Value>) {
        self.bytes = bytes;
        self.sample = sample;
        self.sample_of_data = true;
        self.sample_findings.extend(findings);
    }

    /// The client's copy of one cell's text, masked by its column's rule or the detectors; `None`
    /// when it holds nothing to mask. Counted for the result's `client_masked`.
    pub fn mask_for_client(
        &mut self,
        text: &str,
        rule: Option<&ColumnRule>,
        recorder: &SessionRecorder,
    ) -> Option<String> {
        let (masked, findings) = match rule {
            Some(rule) => {
                let (shown, finding) = recorder.mask_column(rule, text, "client");
                (Cow::Owned(shown), vec![finding])
            }
            None => recorder.mask(text, "client"),
        };
        if findings.is_empty() {
            return None;
        }
        self.client_masking.cells += 1;
        let room = MAX_CLIENT_FINDINGS.saturating_sub(self.client_masking.findings.len());
        self.client_masking
            .findings
            .extend(findings.into_iter().take(room));
        Some(masked.into_owned())
    }

    /// A cell that held a secret but cannot be masked in place went to the client as NULL.
    pub fn note_nulled(&mut self) {
        self.client_masking.nulled += 1;
    }

    /// Some of the result reached the client unmasked, and why.
    pub fn note_unmasked(&mut self, why: &'static str) {
        self.client_masking.unmasked = Some(why);
    }

    /// A notice or warning the target attached to this result (masked when recorded).
    pub fn note(&mut self, notice: Value) {
        if self.notices.len() < MAX_NOTICES {
            self.notices.push(notice);
        }
    }

    /// Rows counted so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Queues the `db.result` event. `columns` are the result's, if it had rows.
    pub async fn record<C: AsRef<RecordedColumn>>(
        &mut self,
        end: ResultEnd<'_>,
        columns: Option<&[C]>,
        recorder: &mut SessionRecorder,
    ) -> Result<(), RecordError> {
        let mut findings = Vec::new();
        let mut event = Body::new().uint("bytes", self.bytes);
        let client = &self.client_masking;
        if client.cells > 0 || client.unmasked.is_some() {
            let mut masked = json!({"cells": client.cells, "nulled": client.nulled});
            if let Some(why) = client.unmasked {
                masked["unmasked"] = json!(why);
            }
            event = event.value("client_masked", &masked);
        }
        if let Some(columns) = columns {
            event = event.strs(
                "columns",
                columns.iter().map(|c| c.as_ref().recorded_name.as_str()),
            );
            for column in columns {
                findings.extend(column.as_ref().name_findings.iter().cloned());
            }
        }
        event = event.uint("duration_us", self.started.elapsed().as_micros() as u64);
        if let Some(id) = end.last_insert_id.filter(|id| *id != 0) {
            event = event.uint("last_insert_id", id);
        }
        if !self.notices.is_empty() {
            let mut notices = Value::Array(std::mem::take(&mut self.notices));
            findings.extend(recorder.mask_value(&mut notices, "notice"));
            event = event.value("notices", &notices);
        }
        event = event.uint("query", self.query_seq).uint("rows", end.rows);
        if !self.sample.is_empty() || self.sample_truncated || self.sample_of_data {
            // Masked already, cell by cell or data message by data message, before each was cut.
            event = event.value("sample", &Value::Array(std::mem::take(&mut self.sample)));
            if !self.sample_of_data {
                event = event.bool("sample_truncated", self.sample_truncated);
            }
        }
        if end.suspended {
            event = event.bool("suspended", true);
        }
        event = event.str("tag", end.tag);
        if let Some(warnings) = end.warnings.filter(|w| *w > 0) {
            event = event.uint("warnings", warnings);
        }
        findings.append(&mut self.sample_findings);
        findings.append(&mut self.client_masking.findings);
        recorder
            .record_queued_with("db.result", event.finish(), findings)
            .await?;
        Ok(())
    }
}

/// Cuts every string in `value` longer than `max` bytes after masking: on a character boundary,
/// never inside a mask (the cut moves past it), keeping the length that an earlier cut noted.
pub fn cut_strings(value: &mut Value, max: usize) {
    match value {
        Value::String(text) if text.len() > max => {
            let (kept, total) = match text.rsplit_once('…') {
                Some((kept, note)) => match note
                    .strip_prefix('[')
                    .and_then(|n| n.strip_suffix(" bytes]"))
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    Some(total) => (kept, total),
                    None => (text.as_str(), text.len()),
                },
                None => (text.as_str(), text.len()),
            };
            if kept.len() <= max {
                return;
            }
            let mut end = max;
            while !kept.is_char_boundary(end) {
                end -= 1;
            }
            if let Some(open) = kept[..end].rfind('[') {
                let mask = &kept[open..];
                if let (true, Some(close)) = (mask.starts_with("[MASKED:"), mask.find(']')) {
                    end = end.max(open + close + 1);
                }
            }
            *text = format!("{}…[{total} bytes]", &kept[..end]);
        }
        Value::Array(items) => items.iter_mut().for_each(|item| cut_strings(item, max)),
        Value::Object(fields) => fields.values_mut().for_each(|item| cut_strings(item, max)),
        _ => {}
    }
}

/// `text` cut to `max` bytes on a character boundary, noting its full length.
pub fn cut_text(text: &str, max: usize) -> Value {
    if text.len() <= max {
        return Value::String(text.to_owned());
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Value::String(format!("{}…[{} bytes]", &text[..end], text.len()))
}
