//! Cost of judging one statement: classification (parse, or a remembered answer) plus the rules.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use proctor_policy::{
    Classifier, Dialect, Guard, Policy, PolicySpec, Preset, Request, RequestKind,
};

const STATEMENTS: [(&str, &str); 4] = [
    ("pgbench_select", "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"),
    (
        "join",
        "SELECT u.id, u.email, count(o.id) FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.created_at > now() - interval '7 days' GROUP BY u.id, u.email ORDER BY 3 DESC LIMIT 20",
    ),
    ("update", "UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 48213;"),
    ("ddl", "ALTER TABLE orders ADD COLUMN shipped_at timestamptz"),
];

fn bench(c: &mut Criterion) {
    let policy = Arc::new(
        Policy::new(&PolicySpec {
            preset: Preset::Recommended,
            ..PolicySpec::default()
        })
        .unwrap(),
    );
    for (name, sql) in STATEMENTS {
        c.bench_function(&format!("parse/{name}"), |b| {
            b.iter(|| Classifier::new(Dialect::Postgres).classify(black_box(sql)))
        });
        // Numbers vary between calls, as they do between a client's statements.
        let mut guard = Guard::new(policy.clone(), Dialect::Postgres);
        let variants: Vec<String> = (0..64)
            .map(|i| sql.replace("48213", &(48213 + i).to_string()))
            .collect();
        let mut i = 0;
        c.bench_function(&format!("judge_recommended/{name}"), |b| {
            b.iter(|| {
                i = (i + 1) % variants.len();
                guard.judge(&Request {
                    kind: RequestKind::Sql(Dialect::Postgres),
                    text: black_box(&variants[i]),
                    target: "app-db",
                    identity: "alice",
                    groups: &[],
                })
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
