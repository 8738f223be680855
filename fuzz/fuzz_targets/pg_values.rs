//! Parameter and result values as the journal records them: the first four bytes are the type OID,
//! the fifth says binary or text and the sixth the size budget; the rest is the value. The same bytes
//! are read as a binary COPY data message too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proctor_pg::values;

fuzz_target!(|data: &[u8]| {
    let [a, b, c, d, format, budget, value @ ..] = data else {
        return;
    };
    let type_oid = u32::from_be_bytes([*a, *b, *c, *d]);
    let max = usize::from(*budget) * 8;
    let mut decoded = values::decode(type_oid, format & 1 == 1, Some(value), max);
    proctor_core::results::cut_strings(&mut decoded, max / 2);
    if let Some(mut tuples) = values::binary_copy_tuples(value, max) {
        for tuple in &mut tuples {
            proctor_core::results::cut_strings(tuple, max / 2);
        }
    }
});
