//! Masking quality and speed on generated traffic: SQL statements, JSON log lines, CSV rows and
//! terminal output, clean (with realistic near-misses: trace ids, hashes, UUIDs, order numbers,
//! timestamps, base64 of non-secret data, identifiers with digits) and seeded with secrets of every
//! kind the built-in detectors claim. Prints per detector the recall on the seeded corpus and the
//! false positives per 100 MB on the clean one, then MB/s on one core with the built-in detectors
//! and with the shipped gitleaks set, on clean and on secret-dense text. Deterministic for a seed.
//!
//!   cargo run --release -p proctor-mask --example mask_quality -- [--mb 20] [--seed 1] [--density 0.05] [--rounds 3] [--only quality|speed]
//!
//! With `--write DIR` it writes the clean and the seeded corpus as files of about 64 KiB instead
//! (records joined by newlines), and with `--compare DIR --report FILE` it compares the shipped
//! gitleaks set's findings on the files of DIR, rule by rule, with a gitleaks JSON report on them
//! (see `bench/gitleaks-compare.sh` and [`compare`]).

use std::collections::BTreeMap;
use std::time::Instant;

use proctor_mask::{builtin_rules, gitleaks, Rule, Scanner};

/// A small deterministic generator (SplitMix64): the corpora depend on the seed alone.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn from(&mut self, alphabet: &str, len: usize) -> String {
        let bytes = alphabet.as_bytes();
        (0..len)
            .map(|_| char::from(bytes[self.below(bytes.len())]))
            .collect()
    }

    fn hex(&mut self, len: usize) -> String {
        self.from("0123456789abcdef", len)
    }

    fn digits(&mut self, len: usize) -> String {
        self.from("0123456789", len)
    }

    fn number(&mut self, below: usize) -> usize {
        self.below(below)
    }
}

const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const BASE64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn uuid(rng: &mut Rng) -> String {
    let h = rng.hex(32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..]
    )
}

fn timestamp(rng: &mut Rng) -> String {
    format!(
        "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        1 + rng.number(12),
        1 + rng.number(28),
        rng.number(24),
        rng.number(60),
        rng.number(60),
        rng.number(1000)
    )
}

/// An order number as shops write them: a date and a sequence, 16 to 18 digits.
fn order_number(rng: &mut Rng) -> String {
    let sequence = 8 + rng.number(3);
    format!(
        "2026{:02}{:02}{}",
        1 + rng.number(12),
        1 + rng.number(28),
        rng.digits(sequence)
    )
}

const WORDS: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "oscar", "peggy", "trent", "victor", "walter",
];
const REGIONS: &[&str] = &["eu-west-1", "us-east-2", "ap-south-1", "eu-central-1"];
const STATUSES: &[&str] = &["paid", "pending", "shipped", "refunded", "cancelled"];

/// One clean record of one of the four kinds of traffic, with near-misses.
fn clean_record(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => format!(
            "SELECT o.id, o.total, o.status FROM orders o JOIN customers c ON c.id = o.customer_id \
             WHERE o.order_number = '{}' AND o.created_at > '{}' AND c.region = '{}' LIMIT {};",
            order_number(rng),
            timestamp(rng),
            rng.pick(REGIONS),
            1 + rng.number(500)
        ),
        1 => format!(
            "INSERT INTO events (id, trace_id, span_id, kind, payload_sha256, at) VALUES ('{}', '{}', '{}', \
             'checkout', '{}', '{}');",
            uuid(rng),
            rng.hex(32),
            rng.hex(16),
            rng.hex(64),
            timestamp(rng)
        ),
        2 => format!(
            "UPDATE accounts SET balance = balance + {}, version = version + 1, token_count = {} \
             WHERE account_no = {} AND api_version = '2024-06-01';",
            rng.number(100_000),
            rng.number(1_000_000),
            rng.digits(12)
        ),
        3 => format!(
            "{{\"ts\":\"{}\",\"level\":\"info\",\"trace_id\":\"{}\",\"span_id\":\"{}\",\"user_id\":{},\
             \"msg\":\"order {} {}\",\"duration_ms\":{},\"request_id\":\"{}\",\"build\":\"{}\"}}",
            timestamp(rng),
            rng.hex(32),
            rng.hex(16),
            rng.number(10_000_000),
            order_number(rng),
            rng.pick(STATUSES),
            rng.number(5_000),
            uuid(rng),
            rng.hex(40)
        ),
        4 => {
            let doc = format!(
                "{{\"cart\":[{{\"sku\":\"SKU-{}\",\"qty\":{}}}],\"customer\":\"{}\",\"region\":\"{}\"}}",
                rng.digits(8),
                1 + rng.number(9),
                rng.pick(WORDS),
                rng.pick(REGIONS)
            );
            format!(
                "{{\"ts\":\"{}\",\"level\":\"debug\",\"event\":\"cart.saved\",\"snapshot\":\"{}\",\
                 \"etag\":\"W/\\\"{}\\\"\",\"epoch_us\":{}}}",
                timestamp(rng),
                base64(doc.as_bytes()),
                rng.hex(24),
                1_764_000_000_000_000u64 + rng.next() % 1_000_000_000_000
            )
        }
        5 => format!(
            "{},{},{},{},{}.{:02},{},{},srv-{}-{}",
            rng.number(10_000_000),
            uuid(rng),
            rng.pick(WORDS),
            order_number(rng),
            rng.number(10_000),
            rng.number(100),
            rng.pick(STATUSES),
            timestamp(rng),
            rng.pick(REGIONS),
            rng.number(64)
        ),
        6 => format!(
            "{}  k8s-node-{}  Running  {}  sha256:{}  {}d  10.{}.{}.{}",
            rng.hex(12),
            rng.number(40),
            rng.number(9),
            rng.hex(64),
            rng.number(90),
            rng.number(255),
            rng.number(255),
            rng.number(255)
        ),
        _ => format!(
            "commit {}\nAuthor: {}\nDate:   {}\n\n    fix: retry on {} (build {}, run {})\n\
             postgres@db-{}:~$ pg_dump -Fc app > /backup/app-202612{:02}{:06}.dump",
            rng.hex(40),
            rng.pick(WORDS),
            timestamp(rng),
            rng.hex(7),
            rng.from(BASE64URL, 22),
            rng.digits(10),
            rng.number(9),
            1 + rng.number(28),
            rng.number(240_000)
        ),
    }
}

/// A secret planted in a record: the detector that should find it and the secret it should yield.
struct Planted {
    detector: &'static str,
    secret: String,
}

fn luhn_complete(prefix: &str, length: usize, rng: &mut Rng) -> String {
    let mut digits = format!("{prefix}{}", rng.digits(length - prefix.len() - 1));
    let sum: u32 = digits
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).unwrap_or_default();
            match (i % 2, d * 2) {
                (1, _) => d,
                (_, doubled) if doubled > 9 => doubled - 9,
                (_, doubled) => doubled,
            }
        })
        .sum();
    digits.push(char::from(b'0' + ((10 - sum % 10) % 10) as u8));
    digits
}

fn card(rng: &mut Rng) -> String {
    let (prefix, length) = match rng.below(6) {
        0 => ("4", 16),
        1 => ("5", 16),
        2 => ("2", 16),
        3 => ("3", 15),
        4 => ("6011", 16),
        _ => ("35", 16),
    };
    let prefix = match prefix {
        "5" => format!("5{}", 1 + rng.number(5)),
        "2" => format!("{}", 2221 + rng.number(500)),
        "3" => rng.pick(&["34", "37"]).to_owned(),
        "35" => format!("{}", 3528 + rng.number(62)),
        other => other.to_owned(),
    };
    let digits = luhn_complete(&prefix, length, rng);
    let separator = rng.pick(&["", " ", "-"]);
    if separator.is_empty() {
        return digits;
    }
    let groups: &[usize] = if length == 15 {
        &[4, 6, 5]
    } else {
        &[4, 4, 4, 4]
    };
    let mut at = 0;
    let parts: Vec<&str> = groups
        .iter()
        .map(|len| {
            let part = &digits[at..at + len];
            at += len;
            part
        })
        .collect();
    parts.join(separator)
}

fn iban(rng: &mut Rng) -> String {
    let (country, bban) = match rng.below(3) {
        0 => ("DE", rng.digits(18)),
        1 => (
            "GB",
            format!(
                "{}{}",
                rng.from("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 4),
                rng.digits(14)
            ),
        ),
        _ => ("FR", rng.digits(23)),
    };
    let rearranged = format!("{bban}{country}00");
    let remainder = rearranged.chars().fold(0u32, |r, c| {
        let v = c.to_digit(36).unwrap_or_default();
        if v < 10 {
            (r * 10 + v) % 97
        } else {
            (r * 100 + v) % 97
        }
    });
    let compact = format!("{country}{:02}{bban}", 98 - remainder);
    if rng.chance(0.5) {
        return compact;
    }
    let chunks: Vec<String> = compact
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    chunks.join(" ")
}

fn password(rng: &mut Rng) -> String {
    format!(
        "{}-{}{}",
        rng.from(ALNUM, 10),
        rng.digits(2),
        rng.from("!#%*", 1)
    )
}

/// A record carrying one secret (two for an AWS key pair), in a context where it is typed.
fn seeded_record(rng: &mut Rng, pii: bool) -> (String, Vec<Planted>) {
    let kinds = if pii { 22 } else { 19 };
    let plant = |detector: &'static str, secret: &str| Planted {
        detector,
        secret: secret.to_owned(),
    };
    let ts = timestamp(rng);
    match rng.below(kinds) {
        0 => {
            let id = format!("AKIA{}", rng.from("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16));
            let secret = rng.from(BASE64, 40);
            (
                format!("[default]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\nregion = {}", rng.pick(REGIONS)),
                vec![plant("aws-access-key-id", &id), plant("aws-secret-access-key", &secret)],
            )
        }
        1 => {
            let token = format!("ghp_{}", rng.from(ALNUM, 36));
            (
                format!(
                    "{{\"ts\":\"{ts}\",\"level\":\"warn\",\"msg\":\"clone with {token} failed\"}}"
                ),
                vec![plant("github-token", &token)],
            )
        }
        2 => {
            let token = format!("glpat-{}", rng.from(BASE64URL, 20));
            (
                format!("$ git clone https://oauth2:{token}@gitlab.example.com/team/app.git"),
                vec![plant("gitlab-token", &token)],
            )
        }
        3 => {
            let token = format!(
                "xoxb-{}-{}-{}",
                rng.digits(12),
                rng.digits(13),
                rng.from(ALNUM, 24)
            );
            (
                format!("INSERT INTO integrations (kind, credential_ref, value) VALUES ('slack', 'bot', '{token}');"),
                vec![plant("slack-token", &token)],
            )
        }
        4 => {
            let key = format!("sk_live_{}", rng.from(ALNUM, 24));
            (
                format!("{},stripe,{key},{}", rng.number(1000), rng.pick(STATUSES)),
                vec![plant("stripe-key", &key)],
            )
        }
        5 => {
            let header = base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
            let payload = base64url(
                format!(
                    "{{\"sub\":\"{}\",\"iat\":{}}}",
                    rng.number(100_000),
                    1_764_000_000 + rng.number(1_000_000)
                )
                .as_bytes(),
            );
            let jwt = format!("{header}.{payload}.{}", rng.from(BASE64URL, 43));
            (
                format!("{{\"ts\":\"{ts}\",\"msg\":\"session\",\"id_token\":\"{jwt}\"}}"),
                vec![plant("jwt", &jwt)],
            )
        }
        6 => {
            let token = rng.from(BASE64URL, 32);
            (
                format!(
                    "> GET /v1/orders HTTP/1.1\n> Authorization: Bearer {token}\n> Accept: */*"
                ),
                vec![plant("bearer-token", &token)],
            )
        }
        7 => {
            let pw = password(rng);
            (
                format!(
                    "psql postgres://app:{pw}@db-{}.internal:5432/app -c 'select 1'",
                    rng.number(9)
                ),
                vec![plant("connection-uri-password", &pw)],
            )
        }
        8 => {
            let pw = password(rng);
            (
                format!(
                    "host=db-{} port=5432 user=app password={pw} dbname=app sslmode=require",
                    rng.number(9)
                ),
                vec![plant("dsn-password", &pw)],
            )
        }
        9 => {
            let pw = password(rng);
            (
                format!(
                    "ALTER ROLE {} WITH LOGIN PASSWORD '{pw}' VALID UNTIL '2027-01-01';",
                    rng.pick(WORDS)
                ),
                vec![plant("sql-password", &pw)],
            )
        }
        10 => {
            let body: Vec<String> = (0..6).map(|_| rng.from(BASE64, 64)).collect();
            let key = format!(
                "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----",
                body.join("\n")
            );
            (
                format!("INSERT INTO certs (host, key_pem) VALUES ('api', '{key}');"),
                vec![plant("private-key", &key)],
            )
        }
        11 | 12 => {
            let number = card(rng);
            (
                format!("INSERT INTO payments (order_number, card, amount) VALUES ('{}', '{number}', {}.{:02});", order_number(rng), rng.number(1000), rng.number(100)),
                vec![plant("card-number", &number)],
            )
        }
        13 => {
            let token = format!("prt_{}_{}", rng.hex(8), rng.from(BASE64URL, 43));
            (
                format!("psql -h proctor -U {token} app"),
                vec![plant("proctor-token", &token)],
            )
        }
        14 => {
            let key = format!("AIza{}", rng.from(BASE64URL, 35));
            (
                format!(
                    "curl 'https://maps.googleapis.com/maps/api/geocode/json?address=x&key={key}'"
                ),
                vec![plant("gcp-api-key", &key)],
            )
        }
        15 => {
            let id = rng.hex(40);
            (
                format!("{{\"type\": \"service_account\", \"project_id\": \"app-{}\", \"private_key_id\": \"{id}\"}}", rng.number(999)),
                vec![plant("gcp-service-account-key", &id)],
            )
        }
        16 => {
            let key = format!("{}==", rng.from(BASE64, 86));
            (
                format!("DefaultEndpointsProtocol=https;AccountName=store{};AccountKey={key};EndpointSuffix=core.windows.net", rng.number(99)),
                vec![plant("azure-storage-key", &key)],
            )
        }
        17 => {
            let url = format!(
                "https://hooks.slack.com/services/T{}/B{}/{}",
                rng.from(ALNUM, 8).to_uppercase(),
                rng.from(ALNUM, 8).to_uppercase(),
                rng.from(ALNUM, 24)
            );
            (
                format!("{{\"ts\":\"{ts}\",\"notify\":\"{url}\"}}"),
                vec![plant("slack-webhook", &url)],
            )
        }
        18 => {
            let secret = format!("{}{}", rng.from(ALNUM, 20), rng.digits(4));
            let keyword = rng.pick(&[
                "api_key",
                "client_secret",
                "access_key",
                "secret",
                "token",
                "credentials",
            ]);
            (
                format!(
                    "{}: {keyword}={secret} loaded",
                    rng.pick(&["config", "env", "settings"])
                ),
                vec![plant("generic-secret", &secret)],
            )
        }
        19 => {
            let email = format!(
                "{}.{}{}@example.com",
                rng.pick(WORDS),
                rng.pick(WORDS),
                rng.number(100)
            );
            (
                format!(
                    "UPDATE customers SET email = '{email}' WHERE id = {};",
                    rng.number(100_000)
                ),
                vec![plant("email", &email)],
            )
        }
        20 => {
            let phone = match rng.below(3) {
                0 => format!("+44 20 {} {}", rng.digits(4), rng.digits(4)),
                1 => format!("+1 415 555 {}", rng.digits(4)),
                _ => format!("+49 30 {}", rng.digits(7)),
            };
            (
                format!(
                    "{},{},{phone},{}",
                    rng.number(100_000),
                    rng.pick(WORDS),
                    rng.pick(REGIONS)
                ),
                vec![plant("phone", &phone)],
            )
        }
        _ => {
            let account = iban(rng);
            (
                format!(
                    "{{\"ts\":\"{ts}\",\"payout\":{{\"iban\":\"{account}\",\"amount\":{}}}}}",
                    rng.number(10_000)
                ),
                vec![plant("iban", &account)],
            )
        }
    }
}

/// The texts a pgbench `-N` transaction makes Proctor mask, four per transaction: its three
/// statements and the balance row its SELECT returns.
fn pgbench_texts(transactions: usize) -> Vec<String> {
    let mut rng = Rng(7);
    let mut texts = Vec::with_capacity(transactions * 4);
    for _ in 0..transactions {
        let (aid, tid, bid) = (
            1 + rng.number(1_000_000),
            1 + rng.number(100),
            1 + rng.number(10),
        );
        let delta = rng.number(10_001) as i64 - 5000;
        texts.push(format!(
            "UPDATE pgbench_accounts SET abalance = abalance + {delta} WHERE aid = {aid};"
        ));
        texts.push(format!(
            "SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"
        ));
        texts.push(format!("[\"{}\"]", rng.number(100_000) as i64 - 50_000));
        texts.push(format!(
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ({tid}, {bid}, {aid}, {delta}, CURRENT_TIMESTAMP);"
        ));
    }
    texts
}

/// Records of about `bytes` in all; a record holds a planted secret with probability `density`.
fn corpus(seed: u64, bytes: usize, density: f64, pii: bool) -> (Vec<String>, Vec<Vec<Planted>>) {
    let mut rng = Rng(seed);
    let (mut records, mut planted, mut size) = (Vec::new(), Vec::new(), 0);
    while size < bytes {
        let (record, secrets) = if rng.chance(density) {
            seeded_record(&mut rng, pii)
        } else {
            (clean_record(&mut rng), Vec::new())
        };
        size += record.len();
        records.push(record);
        planted.push(secrets);
    }
    (records, planted)
}

fn with_gitleaks(pii: bool) -> Vec<Rule> {
    let mut rules = builtin_rules(pii);
    match gitleaks::load(gitleaks::EMBEDDED) {
        Ok(loaded) => rules.extend(loaded.rules),
        Err(e) => eprintln!("the shipped gitleaks set does not load: {e}"),
    }
    rules
}

fn total_bytes(records: &[String]) -> usize {
    records.iter().map(String::len).sum()
}

/// False positives per detector on a clean corpus, scaled to 100 MB.
fn false_positives(
    scanner: &Scanner,
    records: &[String],
) -> BTreeMap<String, (usize, Vec<String>)> {
    let mut by_detector: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    for record in records {
        let (_, secrets) = scanner.mask(record);
        for secret in secrets {
            let entry = by_detector.entry(secret.detector).or_default();
            entry.0 += 1;
            if entry.1.len() < 3 {
                entry.1.push(secret.value.into_owned());
            }
        }
    }
    by_detector
}

/// Per planted detector: (planted, found by that detector, no longer in clear in the masked text).
fn recall(
    scanner: &Scanner,
    records: &[String],
    planted: &[Vec<Planted>],
) -> BTreeMap<&'static str, (usize, usize, usize)> {
    let mut by_detector: BTreeMap<&'static str, (usize, usize, usize)> = BTreeMap::new();
    for (record, secrets) in records.iter().zip(planted) {
        if secrets.is_empty() {
            continue;
        }
        let (masked, found) = scanner.mask(record);
        for plant in secrets {
            let entry = by_detector.entry(plant.detector).or_default();
            entry.0 += 1;
            if found
                .iter()
                .any(|f| f.detector == plant.detector && f.value == plant.secret)
            {
                entry.1 += 1;
            }
            if !masked.contains(plant.secret.as_str()) {
                entry.2 += 1;
            }
        }
    }
    by_detector
}

/// Time on this thread's core: the CPU time the kernel accounts to the thread (Linux), so that other
/// work on a shared machine does not count; elsewhere, the wall clock.
pub(crate) struct Clock {
    cpu: Option<u64>,
    wall: Instant,
}

impl Clock {
    fn start() -> Self {
        Self {
            cpu: Self::cpu_nanos(),
            wall: Instant::now(),
        }
    }

    fn cpu_nanos() -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        stat.split_whitespace().next()?.parse().ok()
    }

    fn seconds(&self) -> f64 {
        match (self.cpu, Self::cpu_nanos()) {
            (Some(from), Some(to)) if to > from => (to - from) as f64 / 1e9,
            _ => self.wall.elapsed().as_secs_f64(),
        }
    }
}

/// How a throughput run reads the text.
#[derive(Clone, Copy)]
enum Pass {
    /// `Scanner::mask`: hex and base64 runs decoded and scanned, then the detectors on the text.
    Mask,
    /// `Scanner::find`: the detectors on the text alone.
    Find,
}

/// The records joined by newlines into texts of about 64 KiB, as a large value or a COPY batch is
/// masked.
fn blocks(records: &[String]) -> Vec<String> {
    let mut blocks = vec![String::new()];
    for record in records {
        let last = blocks.len() - 1;
        if blocks[last].len() >= 64 * 1024 {
            blocks.push(String::new());
        }
        let block = blocks.last_mut().expect("one block at least");
        block.push_str(record);
        block.push('\n');
    }
    blocks
}

/// The least CPU time one measurement takes: the kernel accounts a thread's time at scheduler ticks,
/// so a shorter one would read a few ticks.
const MEASURED_SECONDS: f64 = 0.3;

/// MB/s on one core, each record on its own (as the gateway masks a statement or a cell), best of
/// `rounds`; a round passes over the records as many times as it takes to last [`MEASURED_SECONDS`].
fn throughput(scanner: &Scanner, records: &[String], pass: Pass, rounds: usize) -> f64 {
    let bytes = total_bytes(records) as f64;
    (0..rounds)
        .map(|_| {
            let started = Clock::start();
            let (mut found, mut passes) = (0usize, 0usize);
            let seconds = loop {
                for record in records {
                    found += match pass {
                        Pass::Mask => scanner.mask(record).1.len(),
                        Pass::Find => scanner.find(record).len(),
                    };
                }
                passes += 1;
                let seconds = started.seconds();
                if seconds >= MEASURED_SECONDS {
                    break seconds;
                }
            };
            std::hint::black_box(found);
            bytes * passes as f64 / 1e6 / seconds
        })
        .fold(0.0, f64::max)
}

/// MB/s of each rule alone on the clean corpus, for the `top` slowest.
fn slowest_rules(rules: Vec<Rule>, records: &[String], top: usize) -> Vec<(String, f64)> {
    let mut timings: Vec<(String, f64)> = rules
        .into_iter()
        .map(|rule| {
            let id = rule.id.clone();
            let scanner = Scanner::new(vec![rule]);
            // One pass is too short for the CPU-time ticks: the wall clock reads it finer.
            let started = Instant::now();
            let found: usize = records.iter().map(|r| scanner.find(r).len()).sum();
            std::hint::black_box(found);
            (id, started.elapsed().as_secs_f64())
        })
        .collect();
    timings.sort_by(|a, b| b.1.total_cmp(&a.1));
    let bytes = total_bytes(records) as f64;
    timings
        .into_iter()
        .take(top)
        .map(|(id, secs)| (id, bytes / 1e6 / secs))
        .collect()
}

struct Options {
    megabytes: usize,
    seed: u64,
    density: f64,
    rounds: usize,
    /// `quality`, `speed`, or both (no `--only`).
    only: Option<String>,
    /// Write the clean and the seeded corpus under this directory, in 64 KiB files, and stop.
    write: Option<String>,
    /// Compare the gitleaks set's findings on the files of this directory with a gitleaks report.
    compare: Option<String>,
    /// gitleaks' JSON report on the directory of `compare`.
    report: Option<String>,
    /// The CPU seconds gitleaks took on that directory, to compare speeds.
    gitleaks_seconds: Option<f64>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        megabytes: 20,
        seed: 1,
        density: 0.05,
        rounds: 3,
        only: None,
        write: None,
        compare: None,
        report: None,
        gitleaks_seconds: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--mb" => options.megabytes = value.parse().map_err(|e| bad(&e))?,
            "--seed" => options.seed = value.parse().map_err(|e| bad(&e))?,
            "--density" => options.density = value.parse().map_err(|e| bad(&e))?,
            "--rounds" => options.rounds = value.parse().map_err(|e| bad(&e))?,
            "--only" if value == "quality" || value == "speed" => options.only = Some(value),
            "--write" => options.write = Some(value),
            "--compare" => options.compare = Some(value),
            "--report" => options.report = Some(value),
            "--gitleaks-seconds" => {
                options.gitleaks_seconds = Some(value.parse().map_err(|e| bad(&e))?)
            }
            _ => {
                return Err(format!(
                "unknown option {flag} (--mb, --seed, --density, --rounds, --only quality|speed, \
                     --write DIR, --compare DIR --report FILE [--gitleaks-seconds S])"
            ))
            }
        }
    }
    Ok(options)
}

fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("mask_quality: {e}");
            std::process::exit(2);
        }
    };
    if let Some(dir) = &options.compare {
        let Some(report) = &options.report else {
            eprintln!("mask_quality: --compare needs --report");
            std::process::exit(2);
        };
        if let Err(e) = compare::run(dir, report, options.gitleaks_seconds) {
            eprintln!("mask_quality: {e}");
            std::process::exit(1);
        }
        return;
    }
    let size = options.megabytes * 1_000_000;
    let (clean, _) = corpus(options.seed, size, 0.0, true);
    let (seeded, planted) = corpus(options.seed ^ 0x5eed, size, options.density, true);
    if let Some(dir) = &options.write {
        let samples = compare::rule_samples(options.seed ^ 0x9a1e, 20);
        for (name, records) in [("clean", &clean), ("seeded", &seeded), ("rules", &samples)] {
            if let Err(e) = compare::write_corpus(&format!("{dir}/{name}"), &blocks(records)) {
                eprintln!("mask_quality: writing {dir}/{name}: {e}");
                std::process::exit(1);
            }
        }
        println!(
            "wrote {dir}/clean ({:.1} MB), {dir}/seeded ({:.1} MB, {} secrets planted) and {dir}/rules \
             ({:.1} MB: 20 strings drawn from each gitleaks rule's regex), seed {}",
            total_bytes(&clean) as f64 / 1e6,
            total_bytes(&seeded) as f64 / 1e6,
            planted.iter().map(Vec::len).sum::<usize>(),
            total_bytes(&samples) as f64 / 1e6,
            options.seed
        );
        return;
    }
    let (dense, _) = corpus(options.seed ^ 0xde45e, size / 4, 1.0, false);
    let planted_count: usize = planted.iter().map(Vec::len).sum();
    println!(
        "corpora (seed {}): clean {:.1} MB in {} records; seeded {:.1} MB, {} secrets (density {}); dense {:.1} MB, a secret in every record",
        options.seed,
        total_bytes(&clean) as f64 / 1e6,
        clean.len(),
        total_bytes(&seeded) as f64 / 1e6,
        planted_count,
        options.density,
        total_bytes(&dense) as f64 / 1e6
    );

    if options.only.as_deref() != Some("speed") {
        quality(&clean, &seeded, &planted);
    }
    if options.only.as_deref() != Some("quality") {
        speed(&clean, &dense, options.rounds);
    }
}

/// Recall per detector on the seeded corpus, false positives on the clean one.
fn quality(clean: &[String], seeded: &[String], planted: &[Vec<Planted>]) {
    let builtin = Scanner::new(builtin_rules(true));
    let augmented = Scanner::new(with_gitleaks(true));
    let per_100mb = 100e6 / total_bytes(clean) as f64;
    for (name, scanner) in [
        ("built-in detectors (pii on)", &builtin),
        ("built-in + gitleaks (pii on)", &augmented),
    ] {
        println!("\n{name}");
        println!(
            "  {:<26} {:>8} {:>10} {:>10}",
            "seeded detector", "planted", "recall", "masked"
        );
        for (detector, (count, found, masked)) in recall(scanner, seeded, planted) {
            println!(
                "  {detector:<26} {count:>8} {:>9.1}% {:>9.1}%",
                100.0 * found as f64 / count as f64,
                100.0 * masked as f64 / count as f64
            );
        }
        let fps = false_positives(scanner, clean);
        if fps.is_empty() {
            println!("  false positives on the clean corpus: none");
        }
        for (detector, (count, examples)) in fps {
            println!(
                "  false positives {detector}: {count} ({:.1} per 100 MB), e.g. {examples:?}",
                count as f64 * per_100mb
            );
        }
    }
}

/// MB/s of the scanner, and of the slowest rules alone.
fn speed(clean: &[String], dense: &[String], rounds: usize) {
    let clean_blocks = blocks(clean);
    let started = Instant::now();
    let builtin = Scanner::new(builtin_rules(false));
    let builtin_built = started.elapsed();
    let augmented = Scanner::new(with_gitleaks(false));
    println!(
        "\nbuilding the scanner: built-in {:.1} ms, with gitleaks {:.1} ms",
        builtin_built.as_secs_f64() * 1e3,
        (started.elapsed() - builtin_built).as_secs_f64() * 1e3
    );
    println!(
        "\nthroughput on one core, each record on its own (64K: the clean records in 64 KiB texts), \
         best of {rounds} rounds (MB per second of CPU time)"
    );
    println!(
        "  {:<20} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "rules", "clean find", "clean mask", "dense find", "dense mask", "64K find", "64K mask"
    );
    for (name, scanner) in [("built-in", &builtin), ("built-in + gitleaks", &augmented)] {
        println!(
            "  {name:<20} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1}",
            throughput(scanner, clean, Pass::Find, rounds),
            throughput(scanner, clean, Pass::Mask, rounds),
            throughput(scanner, dense, Pass::Find, rounds),
            throughput(scanner, dense, Pass::Mask, rounds),
            throughput(scanner, &clean_blocks, Pass::Find, rounds),
            throughput(scanner, &clean_blocks, Pass::Mask, rounds),
        );
    }
    let transactions = pgbench_texts(10_000);
    println!(
        "\nwhat a pgbench transaction (-N: three statements and a row) costs to mask, ns of CPU time"
    );
    for (name, scanner) in [("built-in", &builtin), ("built-in + gitleaks", &augmented)] {
        let bytes_per_second = throughput(scanner, &transactions, Pass::Mask, rounds) * 1e6;
        let per_transaction = total_bytes(&transactions) as f64 / transactions.len() as f64 * 4.0;
        println!(
            "  {name:<20} {:>8.0}",
            per_transaction / bytes_per_second * 1e9
        );
    }
    println!("\nslowest built-in rules alone on the clean corpus (MB/s)");
    for (id, speed) in slowest_rules(builtin_rules(false), clean, 3) {
        println!("  {id:<32} {speed:>9.1}");
    }
    let empty = Scanner::new(Vec::new());
    println!(
        "  (no rules at all: {:.1})",
        throughput(&empty, clean, Pass::Find, rounds)
    );
    for (name, records) in [("clean", clean), ("dense", dense)] {
        println!("\nslowest gitleaks rules alone on the {name} corpus (MB/s)");
        let rules = gitleaks::load(gitleaks::EMBEDDED)
            .map(|l| l.rules)
            .unwrap_or_default();
        for (id, speed) in slowest_rules(rules, records, 5) {
            println!("  {id:<32} {speed:>9.1}");
        }
    }
}

/// The shipped gitleaks set in Proctor against gitleaks itself, on the same files: per rule, the
/// findings both report, those only gitleaks reports and those only Proctor reports. A finding is
/// (file, line, rule, secret) as gitleaks reports it: the line is that of the match's first
/// character that is no newline (gitleaks trims newlines off a match), the secret what the rule's
/// secret group holds.
mod compare {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    use proctor_mask::{gitleaks, RuleFinding, Scanner};
    use serde::Deserialize;

    /// A finding in gitleaks' JSON report (the fields compared, and the match to show).
    #[derive(Deserialize)]
    struct Reported {
        #[serde(rename = "RuleID")]
        rule: String,
        #[serde(rename = "File")]
        file: String,
        #[serde(rename = "StartLine")]
        line: usize,
        #[serde(rename = "Secret")]
        secret: String,
        #[serde(rename = "Match")]
        matched: String,
    }

    /// (file, line, rule, secret).
    type Key = (String, usize, String, String);

    /// `per_rule` strings drawn from each regex of the shipped gitleaks set, each in a record of its
    /// own (alone, as a quoted value, in a JSON log line): the corpora above plant only the kinds of
    /// secret the built-in detectors claim, these give every rule something to find, or to almost find
    /// (look-arounds are not honoured, and neither entropy nor allowlists are aimed at).
    pub fn rule_samples(seed: u64, per_rule: usize) -> Vec<String> {
        let file: toml::Value = toml::from_str(gitleaks::EMBEDDED).expect("the shipped set parses");
        let patterns: Vec<String> = file
            .get("rules")
            .and_then(|rules| rules.as_array())
            .into_iter()
            .flatten()
            .filter_map(|rule| rule.get("regex")?.as_str().map(gitleaks::go_regex))
            .collect();
        let mut rng = super::Rng(seed);
        let mut records = Vec::new();
        for pattern in patterns {
            let Ok(hir) = regex_syntax::parse(&pattern) else {
                continue;
            };
            for _ in 0..per_rule {
                let mut sample = String::new();
                draw(&hir, &mut rng, &mut sample);
                records.push(match rng.below(3) {
                    0 => sample,
                    1 => format!("value = \"{sample}\""),
                    _ => format!(
                        "{{\"ts\":\"{}\",\"v\":\"{sample}\"}}",
                        super::timestamp(&mut rng)
                    ),
                });
            }
        }
        records
    }

    /// Appends to `out` a string that `hir` matches, but for its look-arounds: printable ASCII where
    /// a class allows, each repetition 0 to 6 times more than its least.
    fn draw(hir: &regex_syntax::hir::Hir, rng: &mut super::Rng, out: &mut String) {
        use regex_syntax::hir::{Class, HirKind};
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => {}
            HirKind::Literal(literal) => out.push_str(&String::from_utf8_lossy(&literal.0)),
            HirKind::Class(class) => {
                let ranges: Vec<(u32, u32)> = match class {
                    Class::Unicode(c) => c
                        .ranges()
                        .iter()
                        .map(|r| (r.start() as u32, r.end() as u32))
                        .collect(),
                    Class::Bytes(c) => c
                        .ranges()
                        .iter()
                        .map(|r| (u32::from(r.start()), u32::from(r.end())))
                        .collect(),
                };
                let within = |lo: u32, hi: u32| -> Vec<u32> {
                    ranges
                        .iter()
                        .flat_map(|&(a, b)| a.max(lo)..=b.min(hi))
                        .collect()
                };
                let printable = within(0x21, 0x7e);
                let choices = if printable.is_empty() {
                    within(0x09, 0x7e)
                } else {
                    printable
                };
                let code = if choices.is_empty() {
                    ranges.first().map_or(u32::from(b'x'), |r| r.0)
                } else {
                    choices[rng.below(choices.len())]
                };
                out.push(char::from_u32(code).unwrap_or('x'));
            }
            HirKind::Repetition(repetition) => {
                let most = repetition
                    .max
                    .unwrap_or(u32::MAX)
                    .min(repetition.min.saturating_add(6));
                let times =
                    repetition.min as usize + rng.below((most - repetition.min) as usize + 1);
                for _ in 0..times {
                    draw(&repetition.sub, rng, out);
                }
            }
            HirKind::Capture(capture) => draw(&capture.sub, rng, out),
            HirKind::Concat(parts) => parts.iter().for_each(|part| draw(part, rng, out)),
            HirKind::Alternation(branches) => draw(&branches[rng.below(branches.len())], rng, out),
        }
    }

    /// Writes `texts` as `dir/0000.txt`, `dir/0001.txt`, ...
    pub fn write_corpus(dir: &str, texts: &[String]) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (i, text) in texts.iter().enumerate() {
            std::fs::write(format!("{dir}/{i:04}.txt"), text)?;
        }
        Ok(())
    }

    fn file_name(path: &str) -> String {
        Path::new(path)
            .file_name()
            .map_or_else(|| path.to_owned(), |n| n.to_string_lossy().into_owned())
    }

    /// The line gitleaks reports for a match at `start`: 1 + the newlines before its first character
    /// that is no newline.
    fn line_of(text: &str, whole: &std::ops::Range<usize>) -> usize {
        let skipped =
            text[whole.clone()].len() - text[whole.clone()].trim_start_matches('\n').len();
        1 + text.as_bytes()[..whole.start + skipped]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    /// gitleaks' last step on a file's findings: a finding of a rule whose id says `generic` is
    /// dropped when a rule whose id does not found, on the same line, a secret that holds its secret.
    /// The rules of `restricted` do not count: gitleaks does not run them on these files.
    fn without_generic_duplicates(
        found: Vec<Key>,
        restricted: &BTreeMap<String, String>,
    ) -> (Vec<Key>, usize) {
        let generic = |rule: &str| rule.to_lowercase().contains("generic");
        let kept: Vec<Key> = found
            .iter()
            .filter(|f| {
                !generic(&f.2)
                    || !found.iter().any(|other| {
                        other.1 == f.1
                            && other.2 != f.2
                            && other.3.contains(f.3.as_str())
                            && !generic(&other.2)
                            && !restricted.contains_key(&other.2)
                    })
            })
            .cloned()
            .collect();
        let dropped = found.len() - kept.len();
        (kept, dropped)
    }

    /// Rules that gitleaks runs only on files whose path matches theirs, with that path pattern.
    fn path_restricted() -> BTreeMap<String, String> {
        let file: toml::Value = toml::from_str(gitleaks::EMBEDDED).expect("the shipped set parses");
        file.get("rules")
            .and_then(|rules| rules.as_array())
            .into_iter()
            .flatten()
            .filter(|rule| rule.get("regex").is_some())
            .filter_map(|rule| {
                let id = rule.get("id")?.as_str()?;
                let path = rule.get("path")?.as_str()?;
                Some((id.to_owned(), path.to_owned()))
            })
            .collect()
    }

    pub fn run(dir: &str, report: &str, gitleaks_seconds: Option<f64>) -> Result<(), String> {
        let loaded = gitleaks::load(gitleaks::EMBEDDED)?;
        let ids: BTreeSet<String> = loaded.rules.iter().map(|r| r.id.clone()).collect();
        let scanner = Scanner::new(loaded.rules);
        let restricted = path_restricted();

        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("{dir}: {e}"))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .collect();
        paths.sort();
        let texts: Vec<(String, String)> = paths
            .iter()
            .map(|p| {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                Ok((file_name(&p.to_string_lossy()), text))
            })
            .collect::<Result<_, String>>()?;
        let bytes: usize = texts.iter().map(|(_, t)| t.len()).sum();

        let clock = super::Clock::start();
        let found: Vec<Vec<RuleFinding>> =
            texts.iter().map(|(_, t)| scanner.find_each(t)).collect();
        let proctor_seconds = clock.seconds();

        // Proctor's findings as gitleaks reports them, with the match to show.
        let mut proctor: BTreeMap<Key, usize> = BTreeMap::new();
        let mut proctor_matches: BTreeMap<Key, String> = BTreeMap::new();
        let mut dropped = 0;
        for ((name, text), found) in texts.iter().zip(&found) {
            let keys: Vec<Key> = found
                .iter()
                .map(|f| {
                    let key = (
                        name.clone(),
                        line_of(text, &f.whole),
                        f.detector.clone(),
                        text[f.secret.clone()].to_owned(),
                    );
                    proctor_matches
                        .entry(key.clone())
                        .or_insert_with(|| text[f.whole.clone()].trim_matches('\n').to_owned());
                    key
                })
                .collect();
            let (kept, gone) = without_generic_duplicates(keys, &restricted);
            dropped += gone;
            for key in kept {
                *proctor.entry(key).or_default() += 1;
            }
        }

        let reported: Vec<Reported> = {
            let json = std::fs::read_to_string(report).map_err(|e| format!("{report}: {e}"))?;
            serde_json::from_str::<Option<Vec<Reported>>>(&json)
                .map_err(|e| format!("{report}: {e}"))?
                .unwrap_or_default()
        };
        let mut theirs: BTreeMap<Key, usize> = BTreeMap::new();
        let mut their_matches: BTreeMap<Key, String> = BTreeMap::new();
        for r in reported {
            let key = (file_name(&r.file), r.line, r.rule, r.secret);
            their_matches.entry(key.clone()).or_insert(r.matched);
            *theirs.entry(key).or_default() += 1;
        }

        // Per rule: (both, gitleaks only, Proctor only), and a few of the differences.
        let mut per_rule: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
        let mut examples: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let keys: BTreeSet<&Key> = proctor.keys().chain(theirs.keys()).collect();
        for key in keys {
            let (ours, their) = (
                proctor.get(key).copied().unwrap_or(0),
                theirs.get(key).copied().unwrap_or(0),
            );
            let entry = per_rule.entry(key.2.clone()).or_default();
            let both = ours.min(their);
            entry.0 += both;
            entry.1 += their - both;
            entry.2 += ours - both;
            if ours != their {
                let list = examples.entry(key.2.clone()).or_default();
                if list.len() < 3 {
                    let (who, shown) = if their > ours {
                        ("gitleaks only", their_matches.get(key))
                    } else {
                        ("Proctor only", proctor_matches.get(key))
                    };
                    let shown: String =
                        shown.map_or("", String::as_str).chars().take(160).collect();
                    list.push(format!(
                        "{who}: {}:{} secret {:?} in {shown:?}",
                        key.0, key.1, key.3
                    ));
                }
            }
        }

        println!(
            "{dir}: {} files, {:.1} MB; gitleaks rules that run here: {}",
            texts.len(),
            bytes as f64 / 1e6,
            ids.len()
        );
        println!(
            "  {:<40} {:>8} {:>14} {:>13}",
            "rule", "both", "gitleaks only", "Proctor only"
        );
        let (mut total, mut agree, mut differ) = ((0, 0, 0), 0, Vec::new());
        for (rule, (both, theirs_only, ours_only)) in &per_rule {
            let note = restricted
                .get(rule)
                .map(|path| format!("  (gitleaks: only in files matching {path})"))
                .unwrap_or_default();
            println!("  {rule:<40} {both:>8} {theirs_only:>14} {ours_only:>13}{note}");
            total = (total.0 + both, total.1 + theirs_only, total.2 + ours_only);
            if theirs_only + ours_only == 0 {
                agree += 1;
            } else {
                differ.push(rule.clone());
            }
        }
        println!(
            "  {:<40} {:>8} {:>14} {:>13}",
            "total", total.0, total.1, total.2
        );
        let unknown: Vec<&String> = per_rule.keys().filter(|r| !ids.contains(*r)).collect();
        println!(
            "  rules with findings: {}, the same findings: {agree}, different: {} {differ:?}; rules \
             without findings in either: {}",
            per_rule.len(),
            differ.len(),
            ids.len().saturating_sub(per_rule.len() - unknown.len())
        );
        let silent: Vec<&String> = ids
            .iter()
            .filter(|id| !per_rule.contains_key(*id))
            .collect();
        if !silent.is_empty() && silent.len() <= 10 {
            println!("  rules without findings in either: {silent:?}");
        }
        if !unknown.is_empty() {
            println!("  reported by gitleaks under rules Proctor did not load: {unknown:?}");
        }
        println!(
            "  generic findings dropped from Proctor's side as gitleaks drops them (a non-generic rule \
             found a secret holding theirs on the same line): {dropped}"
        );
        for (rule, list) in &examples {
            for line in list {
                println!("    {rule}: {line}");
            }
        }
        let mb = bytes as f64 / 1e6;
        print!(
            "  time on one core: Proctor {proctor_seconds:.2} s CPU ({:.1} MB/s, the set compiled beforehand)",
            mb / proctor_seconds
        );
        match gitleaks_seconds {
            Some(s) => println!(
                ", gitleaks {s:.2} s CPU ({:.1} MB/s, its start-up taken off)",
                mb / s
            ),
            None => println!(),
        }
        Ok(())
    }
}
