//! ECDSA P-384 / SHA-384 signature verification, the one function every P-384 signature of the
//! crate goes through (NVIDIA certificate chains and SPDM reports), made cheap enough for NEAR.
//!
//! Why not `p384::ecdsa::VerifyingKey::verify`: on wasm32 it costs about 78 Tgas. NEAR charges
//! every executed wasm instruction, and p384 0.14 computes in 64-bit limbs (u128 products
//! become `__multi3` calls on wasm32) with complete projective formulas (about 13 field
//! multiplications per doubling) and inverts twice. Here:
//! * field arithmetic is fiat-crypto's formally verified 32-bit Montgomery code for the P-384
//!   prime (`fiat_crypto::p384_32`, the same code p384 uses with its `fiat` backend; 32x32-bit
//!   products are single wasm `i64.mul`s); scalars stay p384's `Scalar`;
//! * points are Jacobian with the a = -3 doubling (3M + 5S), the special cases of the
//!   incomplete addition formulas handled explicitly (verification is public data: variable
//!   time is fine);
//! * `u1·G + u2·Q` is one interleaved wNAF: width 5 for Q (Jacobian table), width 7 for G from a
//!   constant affine table (mixed additions); the 384 doublings are shared;
//! * no field inversion: `x(R) mod n == r` is checked as `X == r·Z²` or `X == (r + n)·Z²`
//!   (when `r + n < p`), since `x(R) = X/Z²` is below `p < 2n`.
//!
//! It accepts exactly what `VerifyingKey::verify` accepts (P-384 does not normalize `s`); the
//! tests compare both on valid and tampered signatures.

use fiat_crypto::p384_32 as fiat;
use p384::ecdsa::{Signature, VerifyingKey};
use p384::elliptic_curve::ops::{Invert, Reduce};
use p384::elliptic_curve::sec1::ToSec1Point;
use p384::{FieldBytes, Scalar};
use sha2::{Digest, Sha384};

/// The signature does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSignature;

/// Verifies `sig` over SHA-384(`msg`) with `key`; accepts exactly what
/// `p384::ecdsa::VerifyingKey::verify` accepts (high `s` included).
pub fn verify(key: &VerifyingKey, msg: &[u8], sig: &Signature) -> Result<(), BadSignature> {
    let digest: FieldBytes = Sha384::digest(msg);
    verify_prehashed(key, &digest, sig)
}

/// `sig` over the SHA-384 digest `digest` (48 bytes, reduced mod n as ECDSA says).
fn verify_prehashed(
    key: &VerifyingKey,
    digest: &FieldBytes,
    sig: &Signature,
) -> Result<(), BadSignature> {
    let (r, s) = sig.split_scalars();
    let z = <Scalar as Reduce<FieldBytes>>::reduce(digest);
    let s_inv = *s.invert_vartime();
    let u1 = z * s_inv;
    let u2 = *r * s_inv;

    let encoded = key.as_affine().to_sec1_point(false);
    let (Some(qx), Some(qy)) = (encoded.x(), encoded.y()) else {
        return Err(BadSignature); // the identity: a VerifyingKey never is
    };
    let q = Affine {
        x: Fe::from_be_bytes(qx.as_ref()).ok_or(BadSignature)?,
        y: Fe::from_be_bytes(qy.as_ref()).ok_or(BadSignature)?,
    };
    let point = double_mul(&u1.to_bytes(), &u2.to_bytes(), &q);
    if x_matches(&point, &r.to_bytes()) {
        Ok(())
    } else {
        Err(BadSignature)
    }
}

/// `x(R) mod n == r` without leaving Jacobian coordinates; false for the identity.
fn x_matches(point: &Jacobian, r_be: &FieldBytes) -> bool {
    if point.is_identity() {
        return false;
    }
    let z2 = point.z.square();
    let r = be_to_le_limbs(r_be);
    let candidates = [Some(r), add_order_below_p(&r)];
    candidates.into_iter().flatten().any(|candidate| {
        // r < n < p and r + n < p (checked): valid field elements.
        Fe::from_le_limbs(&candidate).is_some_and(|c| c.mul(&z2) == point.x)
    })
}

// ---------------------------------------------------------------------------------------------
// Field elements: fiat-crypto's Montgomery-domain P-384 arithmetic (outputs always fully
// reduced below p, so equality of representations is equality of field elements).

/// P-384 group order n, little-endian 32-bit limbs.
const ORDER: [u32; 12] = [
    0xccc5_2973,
    0xecec_196a,
    0x48b0_a77a,
    0x581a_0db2,
    0xf437_2ddf,
    0xc763_4d81,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
];
/// P-384 prime p, little-endian 32-bit limbs.
const MODULUS: [u32; 12] = [
    0xffff_ffff,
    0x0000_0000,
    0x0000_0000,
    0xffff_ffff,
    0xffff_fffe,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
];

fn be_to_le_limbs(be: &[u8]) -> [u32; 12] {
    let mut limbs = [0u32; 12];
    for (i, chunk) in be.rchunks_exact(4).take(12).enumerate() {
        limbs[i] = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    limbs
}

/// `a < b` on little-endian limbs.
fn less_than(a: &[u32; 12], b: &[u32; 12]) -> bool {
    for i in (0..12).rev() {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
    }
    false
}

/// `r + n` when it is below p (no carry out, then compared), else `None`.
fn add_order_below_p(r: &[u32; 12]) -> Option<[u32; 12]> {
    let mut sum = [0u32; 12];
    let mut carry = 0u64;
    for i in 0..12 {
        let t = u64::from(r[i]) + u64::from(ORDER[i]) + carry;
        sum[i] = t as u32;
        carry = t >> 32;
    }
    (carry == 0 && less_than(&sum, &MODULUS)).then_some(sum)
}

/// A field element in fiat's Montgomery domain, always below p.
#[derive(Clone, Copy)]
struct Fe(fiat::fiat_p384_montgomery_domain_field_element);

impl PartialEq for Fe {
    fn eq(&self, other: &Self) -> bool {
        self.0.0 == other.0.0
    }
}

impl Fe {
    const ZERO: Fe = Fe(fiat::fiat_p384_montgomery_domain_field_element([0; 12]));

    /// A canonical integer below p (little-endian limbs); `None` when >= p.
    fn from_le_limbs(limbs: &[u32; 12]) -> Option<Fe> {
        if !less_than(limbs, &MODULUS) {
            return None;
        }
        let mut out = Fe::ZERO;
        fiat::fiat_p384_to_montgomery(
            &mut out.0,
            &fiat::fiat_p384_non_montgomery_domain_field_element(*limbs),
        );
        Some(out)
    }

    /// 48 big-endian bytes below p.
    fn from_be_bytes(be: &[u8]) -> Option<Fe> {
        if be.len() != 48 {
            return None;
        }
        Fe::from_le_limbs(&be_to_le_limbs(be))
    }

    fn is_zero(&self) -> bool {
        self.0.0 == [0; 12]
    }

    fn mul(&self, rhs: &Fe) -> Fe {
        let mut out = Fe::ZERO;
        fiat::fiat_p384_mul(&mut out.0, &self.0, &rhs.0);
        out
    }

    fn square(&self) -> Fe {
        let mut out = Fe::ZERO;
        fiat::fiat_p384_square(&mut out.0, &self.0);
        out
    }

    fn add(&self, rhs: &Fe) -> Fe {
        let mut out = Fe::ZERO;
        fiat::fiat_p384_add(&mut out.0, &self.0, &rhs.0);
        out
    }

    fn sub(&self, rhs: &Fe) -> Fe {
        let mut out = Fe::ZERO;
        fiat::fiat_p384_sub(&mut out.0, &self.0, &rhs.0);
        out
    }

    fn neg(&self) -> Fe {
        let mut out = Fe::ZERO;
        fiat::fiat_p384_opp(&mut out.0, &self.0);
        out
    }

    fn double(&self) -> Fe {
        self.add(self)
    }

    fn one() -> Fe {
        let mut out = Fe::ZERO;
        fiat::fiat_p384_set_one(&mut out.0);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Points (y² = x³ - 3x + b): affine, and Jacobian (x = X/Z², y = Y/Z³; Z = 0 is the identity).

#[derive(Clone, Copy)]
struct Affine {
    x: Fe,
    y: Fe,
}

impl Affine {
    fn neg(&self) -> Affine {
        Affine {
            x: self.x,
            y: self.y.neg(),
        }
    }
}

#[derive(Clone, Copy)]
struct Jacobian {
    x: Fe,
    y: Fe,
    z: Fe,
}

impl Jacobian {
    const IDENTITY: Jacobian = Jacobian {
        x: Fe::ZERO,
        y: Fe::ZERO,
        z: Fe::ZERO,
    };

    fn from_affine(p: &Affine) -> Jacobian {
        Jacobian {
            x: p.x,
            y: p.y,
            z: Fe::one(),
        }
    }

    fn is_identity(&self) -> bool {
        self.z.is_zero()
    }

    fn neg(&self) -> Jacobian {
        Jacobian {
            x: self.x,
            y: self.y.neg(),
            z: self.z,
        }
    }

    /// dbl-2001-b (a = -3): 3M + 5S. The identity stays the identity (Z3 = 2·Y·Z); no point of
    /// this odd-order curve has y = 0, so a finite point never doubles to it.
    fn double(&self) -> Jacobian {
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x.mul(&gamma);
        let t = self.x.sub(&delta).mul(&self.x.add(&delta));
        let alpha = t.double().add(&t);
        let beta4 = beta.double().double();
        let x3 = alpha.square().sub(&beta4.double());
        let z3 = self.y.add(&self.z).square().sub(&gamma).sub(&delta);
        let gamma2_8 = gamma.square().double().double().double();
        let y3 = alpha.mul(&beta4.sub(&x3)).sub(&gamma2_8);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// add-2007-bl: 11M + 5S, with the cases the formula does not cover (an identity operand,
    /// equal points, opposite points).
    fn add(&self, other: &Jacobian) -> Jacobian {
        if self.is_identity() {
            return *other;
        }
        if other.is_identity() {
            return *self;
        }
        let z1z1 = self.z.square();
        let z2z2 = other.z.square();
        let u1 = self.x.mul(&z2z2);
        let u2 = other.x.mul(&z1z1);
        let s1 = self.y.mul(&other.z).mul(&z2z2);
        let s2 = other.y.mul(&self.z).mul(&z1z1);
        let h = u2.sub(&u1);
        let r = s2.sub(&s1).double();
        if h.is_zero() {
            return if r.is_zero() {
                self.double()
            } else {
                Jacobian::IDENTITY
            };
        }
        let i = h.double().square();
        let j = h.mul(&i);
        let v = u1.mul(&i);
        let x3 = r.square().sub(&j).sub(&v.double());
        let y3 = r.mul(&v.sub(&x3)).sub(&s1.mul(&j).double());
        let z3 = self.z.add(&other.z).square().sub(&z1z1).sub(&z2z2).mul(&h);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// madd-2007-bl (other has Z = 1): 7M + 4S, same special cases as [`Jacobian::add`].
    fn add_affine(&self, other: &Affine) -> Jacobian {
        if self.is_identity() {
            return Jacobian::from_affine(other);
        }
        let z1z1 = self.z.square();
        let u2 = other.x.mul(&z1z1);
        let s2 = other.y.mul(&self.z).mul(&z1z1);
        let h = u2.sub(&self.x);
        let r = s2.sub(&self.y).double();
        if h.is_zero() {
            return if r.is_zero() {
                self.double()
            } else {
                Jacobian::IDENTITY
            };
        }
        let hh = h.square();
        let i = hh.double().double();
        let j = h.mul(&i);
        let v = self.x.mul(&i);
        let x3 = r.square().sub(&j).sub(&v.double());
        let y3 = r.mul(&v.sub(&x3)).sub(&self.y.mul(&j).double());
        let z3 = self.z.add(&h).square().sub(&z1z1).sub(&hh);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// u1·G + u2·Q by one interleaved wNAF.

/// wNAF width for the variable point Q (table of 8 odd multiples, built per call).
const Q_WINDOW: u32 = 5;
/// wNAF width for G (constant table of 32 odd multiples).
const G_WINDOW: u32 = 7;
/// Digits of a 384-bit scalar's wNAF (one more than its bits).
const DIGITS: usize = 385;

/// Width-`w` NAF of the big-endian scalar `k` (< 2^384): digits are 0 or odd in
/// (-2^(w-1), 2^(w-1)), least significant first, and sum(d_i·2^i) = k.
fn wnaf(k_be: &[u8], w: u32) -> [i8; DIGITS] {
    // 13 limbs: adding back a negative digit can carry into bit 384.
    let mut k = [0u32; 13];
    k[..12].copy_from_slice(&be_to_le_limbs(k_be));
    let mut digits = [0i8; DIGITS];
    let window = 1i32 << w;
    let mut i = 0;
    while k.iter().any(|&limb| limb != 0) {
        if k[0] & 1 == 1 {
            let mut d = (k[0] & (window as u32 - 1)) as i32;
            if d >= window / 2 {
                d -= window;
            }
            digits[i] = d as i8;
            // k -= d
            if d > 0 {
                sub_small(&mut k, d as u32);
            } else {
                add_small(&mut k, (-d) as u32);
            }
        }
        // k >>= 1
        for j in 0..13 {
            let high = if j + 1 < 13 { k[j + 1] << 31 } else { 0 };
            k[j] = (k[j] >> 1) | high;
        }
        i += 1;
    }
    digits
}

fn add_small(k: &mut [u32; 13], v: u32) {
    let mut carry = u64::from(v);
    for limb in k.iter_mut() {
        let t = u64::from(*limb) + carry;
        *limb = t as u32;
        carry = t >> 32;
        if carry == 0 {
            break;
        }
    }
}

fn sub_small(k: &mut [u32; 13], v: u32) {
    let mut borrow = v;
    for limb in k.iter_mut() {
        let (t, under) = limb.overflowing_sub(borrow);
        *limb = t;
        borrow = u32::from(under);
        if borrow == 0 {
            break;
        }
    }
}

/// `[1, 3, 5, ..., 2^(w-1) - 1]·P` (Jacobian).
fn odd_multiples(p: &Jacobian) -> [Jacobian; 1 << (Q_WINDOW - 2)] {
    let twice = p.double();
    let mut table = [*p; 1 << (Q_WINDOW - 2)];
    for i in 1..table.len() {
        table[i] = table[i - 1].add(&twice);
    }
    table
}

/// `u1·G + u2·Q` for big-endian scalars.
fn double_mul(u1_be: &[u8], u2_be: &[u8], q: &Affine) -> Jacobian {
    let g_digits = wnaf(u1_be, G_WINDOW);
    let q_digits = wnaf(u2_be, Q_WINDOW);
    let q_table = odd_multiples(&Jacobian::from_affine(q));
    let g_table = &G_TABLE_MONTGOMERY;
    let top = (0..DIGITS)
        .rev()
        .find(|&i| g_digits[i] != 0 || q_digits[i] != 0);
    let Some(top) = top else {
        return Jacobian::IDENTITY;
    };
    let mut acc = Jacobian::IDENTITY;
    for i in (0..=top).rev() {
        acc = acc.double();
        let d = q_digits[i];
        if d > 0 {
            acc = acc.add(&q_table[(d as usize) / 2]);
        } else if d < 0 {
            acc = acc.add(&q_table[(-d as usize) / 2].neg());
        }
        let d = g_digits[i];
        if d > 0 {
            acc = acc.add_affine(&g_table[(d as usize) / 2]);
        } else if d < 0 {
            acc = acc.add_affine(&g_table[(-d as usize) / 2].neg());
        }
    }
    acc
}

/// Number of odd multiples of G in [`G_TABLE`].
const G_TABLE_LEN: usize = 1 << (G_WINDOW - 2);

/// `[1, 3, 5, ..., 2^(G_WINDOW-1) - 1]·G`, affine, `x || y` big-endian (generated and checked by
/// the test `generator_table_is_odd_multiples_of_g`).
const G_TABLE: [[u8; 96]; G_TABLE_LEN] = include!("p384_verify_g_table.in");

/// 192 hex digits to bytes, at compile time (a bad digit fails the build).
const fn hex_literal_96(hex: &str) -> [u8; 96] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("G table: not a lowercase hex digit"),
        }
    }
    let hex = hex.as_bytes();
    assert!(hex.len() == 192, "G table: 96 bytes per entry");
    let mut out = [0u8; 96];
    let mut i = 0;
    while i < 96 {
        out[i] = (nibble(hex[2 * i]) << 4) | nibble(hex[2 * i + 1]);
        i += 1;
    }
    out
}

/// [`G_TABLE`] in fiat's Montgomery domain, converted at compile time.
const G_TABLE_MONTGOMERY: [Affine; G_TABLE_LEN] = {
    const fn coordinate(be: &[u8]) -> Fe {
        let mut limbs = [0u32; 12];
        let mut i = 0;
        while i < 12 {
            let at = 48 - 4 * (i + 1);
            limbs[i] = u32::from_be_bytes([be[at], be[at + 1], be[at + 2], be[at + 3]]);
            i += 1;
        }
        // fiat's precondition: below p.
        let mut j = 12;
        let mut below = false;
        while j > 0 {
            j -= 1;
            if limbs[j] != MODULUS[j] {
                below = limbs[j] < MODULUS[j];
                break;
            }
        }
        assert!(below, "G table: coordinate not below p");
        let mut out = Fe::ZERO;
        fiat::fiat_p384_to_montgomery(
            &mut out.0,
            &fiat::fiat_p384_non_montgomery_domain_field_element(limbs),
        );
        out
    }
    let mut table = [Affine {
        x: Fe::ZERO,
        y: Fe::ZERO,
    }; G_TABLE_LEN];
    let mut i = 0;
    while i < G_TABLE_LEN {
        let (x, y) = G_TABLE[i].split_at(48);
        table[i] = Affine {
            x: coordinate(x),
            y: coordinate(y),
        };
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use p384::ecdsa::SigningKey;
    use p384::ecdsa::signature::{Signer, Verifier};
    use p384::elliptic_curve::Group;
    use p384::{AffinePoint, ProjectivePoint};

    /// Deterministic test randomness: SHA-384 of a counter.
    struct Rng(u64);
    impl Rng {
        fn bytes(&mut self) -> [u8; 48] {
            self.0 += 1;
            Sha384::digest(self.0.to_le_bytes()).into()
        }
        fn below(&mut self, n: usize) -> usize {
            (u64::from_le_bytes(self.bytes()[..8].try_into().unwrap()) % n as u64) as usize
        }
    }

    fn table_entry(p: &ProjectivePoint) -> [u8; 96] {
        let a: AffinePoint = p.to_affine();
        let enc = a.to_sec1_point(false);
        let mut out = [0u8; 96];
        out[..48].copy_from_slice(enc.x().unwrap());
        out[48..].copy_from_slice(enc.y().unwrap());
        out
    }

    #[test]
    fn generator_table_is_odd_multiples_of_g() {
        let g = ProjectivePoint::GENERATOR;
        let twice = g.double();
        let mut p = g;
        let mut expected = Vec::new();
        for _ in 0..G_TABLE_LEN {
            expected.push(table_entry(&p));
            p += twice;
        }
        let text = format!(
            "[\n{}]\n",
            expected
                .iter()
                .map(|e| format!("    hex_literal_96(\"{}\"),\n", hex::encode(e)))
                .collect::<String>()
        );
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/p384_verify_g_table.in");
        if std::env::var_os("P384_REGENERATE_G_TABLE").is_some() {
            std::fs::write(path, &text).unwrap();
        }
        assert_eq!(
            G_TABLE.to_vec(),
            expected,
            "regenerate with P384_REGENERATE_G_TABLE=1"
        );
    }

    fn affine_xy(p: &Jacobian) -> Option<([u8; 48], [u8; 48])> {
        if p.is_identity() {
            return None;
        }
        // x = X/Z², y = Y/Z³ through p384's own field (from canonical bytes).
        let bytes = |fe: &Fe| {
            let mut plain = fiat::fiat_p384_non_montgomery_domain_field_element([0; 12]);
            fiat::fiat_p384_from_montgomery(&mut plain, &fe.0);
            let mut le = [0u8; 48];
            fiat::fiat_p384_to_bytes(&mut le, &plain.0);
            le.reverse();
            le
        };
        let z = p.z;
        let mut zinv = Fe::one();
        // z^(p-2) by square-and-multiply on the big-endian bits of p - 2.
        let mut e = MODULUS;
        e[0] -= 2;
        for i in (0..384).rev() {
            zinv = zinv.square();
            if (e[i / 32] >> (i % 32)) & 1 == 1 {
                zinv = zinv.mul(&z);
            }
        }
        let zinv2 = zinv.square();
        Some((bytes(&p.x.mul(&zinv2)), bytes(&p.y.mul(&zinv2).mul(&zinv))))
    }

    fn p384_xy(p: &ProjectivePoint) -> Option<([u8; 48], [u8; 48])> {
        if bool::from(p.is_identity()) {
            return None;
        }
        let e = table_entry(p);
        Some((e[..48].try_into().unwrap(), e[48..].try_into().unwrap()))
    }

    #[test]
    fn double_mul_matches_p384_lincomb() {
        let mut rng = Rng(1);
        let g = ProjectivePoint::GENERATOR;
        for case in 0..200 {
            let a = <Scalar as Reduce<FieldBytes>>::reduce(&rng.bytes().into());
            let mut b = <Scalar as Reduce<FieldBytes>>::reduce(&rng.bytes().into());
            let mut q = g * <Scalar as Reduce<FieldBytes>>::reduce(&rng.bytes().into());
            match case % 5 {
                // Q = G: the G and Q additions meet equal and opposite points.
                0 => q = g,
                // u2·Q = -u1·G: the result is the identity.
                1 => {
                    q = g;
                    b = -a;
                }
                2 => b = a,
                _ => {}
            }
            let qa = q.to_affine();
            let enc = qa.to_sec1_point(false);
            let q_fe = Affine {
                x: Fe::from_be_bytes(enc.x().unwrap()).unwrap(),
                y: Fe::from_be_bytes(enc.y().unwrap()).unwrap(),
            };
            let ours = double_mul(&a.to_bytes(), &b.to_bytes(), &q_fe);
            let theirs = g * a + q * b;
            assert_eq!(affine_xy(&ours), p384_xy(&theirs), "case {case}");
        }
    }

    #[test]
    fn wnaf_digits_sum_to_the_scalar() {
        let mut rng = Rng(7);
        for w in [Q_WINDOW, G_WINDOW] {
            for _ in 0..200 {
                let k = <Scalar as Reduce<FieldBytes>>::reduce(&rng.bytes().into());
                let digits = wnaf(&k.to_bytes(), w);
                let mut sum = Scalar::ZERO;
                for &d in digits.iter().rev() {
                    sum = sum.double();
                    let m = Scalar::from(u64::from(d.unsigned_abs()));
                    sum += if d < 0 { -m } else { m };
                    assert!(d == 0 || (d % 2 != 0 && i32::from(d).abs() < 1 << (w - 1)));
                }
                assert_eq!(sum, k);
            }
        }
    }

    /// Both verifiers on one (key, message, signature).
    fn agree(key: &VerifyingKey, msg: &[u8], sig: &Signature) -> bool {
        let theirs = key.verify(msg, sig).is_ok();
        assert_eq!(verify(key, msg, sig).is_ok(), theirs, "{sig:?}");
        theirs
    }

    #[test]
    fn agrees_with_p384_on_valid_and_tampered_signatures() {
        let mut rng = Rng(1000);
        let mut valid = 0;
        for case in 0..300 {
            let signing = SigningKey::from_bytes(&rng.bytes().into()).unwrap();
            let key = *signing.verifying_key();
            let msg = rng.bytes()[..rng.below(48)].to_vec();
            let sig: Signature = signing.sign(&msg);
            valid += usize::from(agree(&key, &msg, &sig));
            // High s (= n - s) verifies too: P-384 does not normalize s.
            let (r, s) = sig.split_scalars();
            let high = Signature::from_scalars(*r, -*s).unwrap();
            assert!(agree(&key, &msg, &high));
            // A flipped bit in the message, in r, in s.
            let mut bad_msg = msg.clone();
            if bad_msg.is_empty() {
                bad_msg.push(0);
            } else {
                let i = rng.below(bad_msg.len());
                bad_msg[i] ^= 1 << (case % 8);
            }
            assert!(!agree(&key, &bad_msg, &sig));
            let mut bytes = sig.to_bytes();
            let i = rng.below(96);
            bytes[i] ^= 1 << (case % 8);
            if let Ok(bad) = Signature::from_slice(&bytes) {
                assert!(!agree(&key, &msg, &bad));
            }
            // The right signature under another key.
            let other = *SigningKey::from_bytes(&rng.bytes().into())
                .unwrap()
                .verifying_key();
            assert!(!agree(&other, &msg, &sig));
        }
        assert_eq!(valid, 300);
    }

    #[test]
    fn r_and_s_out_of_range_are_refused_at_parsing() {
        // r or s = 0 or >= n never becomes a Signature: the only way into `verify`.
        let n_be: Vec<u8> = ORDER.iter().rev().flat_map(|l| l.to_be_bytes()).collect();
        let one = {
            let mut b = [0u8; 48];
            b[47] = 1;
            b
        };
        for (r, s) in [
            ([0u8; 48].to_vec(), one.to_vec()),
            (one.to_vec(), [0u8; 48].to_vec()),
            (n_be.clone(), one.to_vec()),
            (one.to_vec(), n_be.clone()),
            ([0xff; 48].to_vec(), one.to_vec()),
        ] {
            assert!(Signature::from_slice(&[r, s].concat()).is_err());
        }
    }

    #[test]
    fn keys_off_the_curve_or_the_identity_never_become_verifying_keys() {
        // `verify` takes a VerifyingKey: p384 refuses these when parsing, the only way in.
        let g = table_entry(&ProjectivePoint::GENERATOR);
        let mut off_curve = [0x04; 97];
        off_curve[1..].copy_from_slice(&g);
        off_curve[96] ^= 1;
        assert!(VerifyingKey::from_sec1_bytes(&off_curve).is_err());
        assert!(VerifyingKey::from_sec1_bytes(&[0x00]).is_err());
        let mut above_p = [0xff; 97];
        above_p[0] = 0x04;
        assert!(VerifyingKey::from_sec1_bytes(&above_p).is_err());
        off_curve[96] ^= 1;
        assert!(VerifyingKey::from_sec1_bytes(&off_curve).is_ok());
    }

    #[test]
    fn r_plus_n_is_a_candidate_only_below_p() {
        // x(R) in [n, p) has probability about 2^-190, so no test vector reaches that branch;
        // its arithmetic is checked here: r + n for small r is in [n, p), for r = n it is not.
        let mut r = [0u32; 12];
        r[0] = 1;
        let sum = add_order_below_p(&r).unwrap();
        assert!(less_than(&sum, &MODULUS) && !less_than(&sum, &ORDER));
        let mut expected = ORDER;
        expected[0] += 1;
        assert_eq!(sum, expected);
        assert!(add_order_below_p(&ORDER).is_none());
    }
}
