//! Scanner throughput (bytes per second on one core) on the three kinds of text a gateway masks:
//! clean statements and logs, result rows, and text dense with secrets, with the built-in detectors
//! and with the shipped gitleaks set added to them (the default). Run by `bench/mask.sh`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proctor_mask::{builtin_rules, gitleaks, Scanner};

/// About `size` bytes made by repeating `unit`.
fn text_of(unit: &str, size: usize) -> String {
    unit.repeat(size / unit.len() + 1)
}

fn scan(c: &mut Criterion) {
    let builtin = Scanner::new(builtin_rules(false));
    let mut rules = builtin_rules(false);
    rules.extend(
        gitleaks::load(gitleaks::EMBEDDED)
            .expect("the shipped gitleaks set loads")
            .rules,
    );
    let with_gitleaks = Scanner::new(rules);
    let inputs = [
        (
            "clean",
            text_of(
                "SELECT a.id, a.name, o.total FROM accounts a JOIN orders o ON o.account_id = a.id \
                 WHERE o.created_at > now() - interval '1 day' AND a.region = 'eu-west' ORDER BY o.total DESC;\n",
                1 << 20,
            ),
        ),
        (
            "rows",
            text_of(
                "[\"42\",\"alice\",\"2026-11-25 08:49:27.22+00\",\"eu-west\",\"1234.50\",\"t\",\"customer since 2019\"]\n",
                1 << 20,
            ),
        ),
        (
            "dense",
            text_of(
                "dsn postgres://admin:S3cr3t-pw@db/prod key AKIAIOSFODNN7EXAMPLE card 4111 1111 1111 1111 \
                 ALTER ROLE app PASSWORD 'n3w-pa55' token=q8Zr3Lm0Xv7TgB2nW5yK\n",
                1 << 20,
            ),
        ),
    ];
    let mut group = c.benchmark_group("scan");
    for (rules, scanner) in [("", &builtin), ("+gitleaks", &with_gitleaks)] {
        for (name, text) in &inputs {
            group.throughput(Throughput::Bytes(text.len() as u64));
            group.bench_function(format!("{name}{rules}"), |b| b.iter(|| scanner.mask(text)));
        }
    }
    group.finish();
}

criterion_group!(benches, scan);
criterion_main!(benches);
