# Reads `callgrind_annotate --auto=no --threshold=100` of an event loop's thread and sums each
# function's own instructions into the part of a transaction's work it belongs to, by the crate and file
# its code comes from (inlined code keeps its own file): hashing (the chain's SHA-256), encoding (the
# events' canonical JSON and log records), commit (the group commit and the log's checksums), protocol
# (framing and the state machine), masking, guardrails (classification and rules), recording (the
# events' bodies), runtime (tokio), allocation, copies, other. Prints `part:NAME INSTRUCTIONS` lines.
# Used by bench/instructions.sh.
function part(file, fn,   c) {
  c = ""
  if (match(file, /crates\/proctor-[a-z]+\//)) c = substr(file, RSTART + 15, RLENGTH - 16)
  else if (match(file, /index\.crates\.io-[0-9a-f]+\/[A-Za-z0-9_-]+-[0-9]/)) {
    c = substr(file, RSTART, RLENGTH - 2); sub(/.*\//, "", c)
  }
  if (c == "journal") {
    if (file ~ /(writer|appender)\.rs/) return "commit"
    return "encoding"
  }
  if (c == "core") {
    if (file ~ /guard\.rs/) return "guardrails"
    if (file ~ /masking\.rs/) return "masking"
    return "recording"
  }
  if (c == "pg" || c == "net" || c == "bytes" || c == "postgres-protocol") return "protocol"
  if (c == "sha2") return "hashing"
  if (c == "crc32fast") return "commit"
  if (c == "mask" || c == "aho-corasick" || c ~ /^regex/ || c == "memchr") return "masking"
  if (c == "policy" || c == "sqlparser") return "guardrails"
  if (c == "tokio" || c == "mio" || c == "parking_lot" || c == "parking_lot_core") return "runtime"
  if (c == "itoa" || c == "ryu" || c == "ryu-js" || c == "serde_json") return "encoding"
  if (c == "rusqlite" || c == "libsqlite3-sys") return "store"
  if (c != "") return "other"
  if (fn ~ /sha2::/) return "hashing"
  if (fn ~ /crc32fast::/) return "commit"
  if (fn ~ /proctor_journal::(writer|appender)/) return "commit"
  if (fn ~ /proctor_journal::/) return "encoding"
  if (fn ~ /proctor_mask::|aho_corasick::|regex/) return "masking"
  if (fn ~ /proctor_policy::|guard::/) return "guardrails"
  if (fn ~ /proctor_pg::/) return "protocol"
  if (fn ~ /tokio::|mio::/) return "runtime"
  if (fn ~ /alloc|free|malloc|realloc|__rdl_|__rust_/) return "allocation"
  if (fn ~ /mem(cpy|move|set|cmp)|memchr|strlen/) return "copies"
  if (fn ~ /sqlite/) return "store"
  if (fn ~ /proctor_core::/) return "recording"
  return "other"
}
/^ *[0-9,]+ +\(/ && !/PROGRAM TOTALS/ {
  n = $1; gsub(/,/, "", n)
  rest = $0; sub(/^ *[0-9,]+ +\([ 0-9.]+%\) +/, "", rest)
  sub(/ \[[^]]*\]$/, "", rest)
  i = index(rest, ":"); file = substr(rest, 1, i - 1); fn = substr(rest, i + 1)
  sum[part(file, fn)] += n
}
END { for (p in sum) print "part:" p, sum[p] }
