//! The global Merkle tree over seals, with RFC 6962 / RFC 9162 hashing: roots, inclusion proofs and
//! consistency proofs, and their verification.
//!
//! Leaf hash `SHA-256(0x00 || data)`, node hash `SHA-256(0x01 || left || right)`, and the tree of `n`
//! leaves splits at the largest power of two below `n`. Proofs are computed from the list of leaf
//! hashes; verification follows RFC 9162 section 2.1.3.2 and 2.1.4.2, so that a verifier written from
//! the RFC in another language agrees. Hand-written: the tree is small and its hashing is the format,
//! and no maintained crate exposes both proof kinds over our own leaf storage. Pure: no I/O.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(data);
    hasher.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: the hash of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n` (n >= 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The root of the tree over `leaves` (leaf hashes).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The inclusion proof of leaf `index` in the tree over `leaves` (RFC 6962 PATH).
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    (index < leaves.len()).then(|| path(leaves, index))
}

fn path(leaves: &[Hash], index: usize) -> Vec<Hash> {
    if leaves.len() <= 1 {
        return Vec::new();
    }
    let k = split(leaves.len());
    let (mut proof, sibling) = if index < k {
        (path(&leaves[..k], index), root(&leaves[k..]))
    } else {
        (path(&leaves[k..], index - k), root(&leaves[..k]))
    };
    proof.push(sibling);
    proof
}

/// The consistency proof between the first `old_size` leaves and all of `leaves` (RFC 6962 PROOF).
pub fn consistency_proof(leaves: &[Hash], old_size: usize) -> Option<Vec<Hash>> {
    if old_size == 0 || old_size > leaves.len() {
        return None;
    }
    if old_size == leaves.len() {
        return Some(Vec::new());
    }
    Some(subproof(leaves, old_size, true))
}

fn subproof(leaves: &[Hash], m: usize, complete: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if complete {
            Vec::new()
        } else {
            vec![root(leaves)]
        };
    }
    let k = split(n);
    if m <= k {
        let mut proof = subproof(&leaves[..k], m, complete);
        proof.push(root(&leaves[k..]));
        proof
    } else {
        let mut proof = subproof(&leaves[k..], m - k, false);
        proof.push(root(&leaves[..k]));
        proof
    }
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves with `root` (RFC 9162 2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// Checks that the tree of `new_size` leaves with `new_root` extends the tree of `old_size` leaves
/// with `old_root` (RFC 9162 2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> bool {
    if old_size == 0 || old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old_size.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && fr == *old_root && sr == *new_root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect()
    }

    /// An independent root: hash pairs level by level, carrying an odd node up unchanged. For RFC 6962
    /// trees this gives the same root as the recursive split.
    fn level_root(leaves: &[Hash]) -> Hash {
        if leaves.is_empty() {
            return empty_root();
        }
        let mut level = leaves.to_vec();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node_hash(l, r),
                    [single] => *single,
                    _ => unreachable!(),
                })
                .collect();
        }
        level[0]
    }

    #[test]
    fn known_roots() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // RFC 6962 leaf hash of the empty string.
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn roots_match_an_independent_computation() {
        for n in 0..=70 {
            assert_eq!(root(&leaves(n)), level_root(&leaves(n)), "n = {n}");
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_no_wrong_one_does() {
        for n in 1..=40 {
            let tree = leaves(n);
            let r = root(&tree);
            for i in 0..n {
                let proof = inclusion_proof(&tree, i).unwrap();
                assert!(
                    verify_inclusion(&tree[i], i as u64, n as u64, &proof, &r),
                    "{i} of {n}"
                );
                let other = (i + 1) % n;
                if other != i {
                    assert!(!verify_inclusion(
                        &tree[other],
                        i as u64,
                        n as u64,
                        &proof,
                        &r
                    ));
                    assert!(!verify_inclusion(
                        &tree[i],
                        other as u64,
                        n as u64,
                        &proof,
                        &r
                    ));
                }
                if let Some((_, shorter)) = proof.split_last() {
                    assert!(!verify_inclusion(&tree[i], i as u64, n as u64, shorter, &r));
                }
            }
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_rewritten_history_does_not() {
        for n in 1..=40 {
            let tree = leaves(n);
            let new_root = root(&tree);
            for m in 1..=n {
                let old_root = root(&tree[..m]);
                let proof = consistency_proof(&tree, m).unwrap();
                assert!(
                    verify_consistency(m as u64, n as u64, &proof, &old_root, &new_root),
                    "{m} -> {n}"
                );
                let mut rewritten = tree.clone();
                rewritten[m - 1] = leaf_hash(b"rewritten");
                let forged_root = root(&rewritten);
                let forged = consistency_proof(&rewritten, m).unwrap();
                assert!(!verify_consistency(
                    m as u64,
                    n as u64,
                    &forged,
                    &old_root,
                    &forged_root
                ));
            }
        }
    }
}
