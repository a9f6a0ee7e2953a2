//! KVP crypto: the encryption half of the guest provisioning protocol (reference §5.3),
//! bit-compatible with the Aether-V/HLVMM guest agents.
//!
//! Host side: [`GuestPublicKey::from_base64`] reads the key a guest publishes (Windows: CAPI
//! `PUBLICKEYBLOB` from `ExportCspBlob(false)`; Linux: PKCS#1 DER `RSAPublicKey`), and [`seal`]
//! turns the plaintext `hlvmm.data.*` items into every host item to write: the checksum, the
//! RSA-PKCS#1-v1.5-wrapped AES-256 key and each value (or 100-character chunk) as
//! `base64(IV(16) || AES-256-CBC/PKCS7(UTF-8))` with a fresh IV.
//!
//! Guest side (the simulator and tests): [`unwrap_key`], [`decrypt_value`] and [`open`], which
//! reassembles chunks and verifies the checksum like the guests do.
//!
//! Key material is zeroized after use. Nothing here logs; errors never carry plaintext.

use super::{checksum, chunk, meta, KvpError, DATA_PREFIX, MAX_CHUNKS};
use aes::Aes256;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use rand::RngCore as _;
use rsa::pkcs1::{DecodeRsaPublicKey, EncodeRsaPublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Encrypt, RsaPrivateKey, RsaPublicKey};
use std::collections::BTreeMap;
use zeroize::{Zeroize, Zeroizing};

/// AES-256 key length in bytes.
pub const AES_KEY_LEN: usize = 32;
/// AES block / IV length in bytes.
pub const IV_LEN: usize = 16;
/// CAPI `bType` of a `PUBLICKEYBLOB`.
const PUBLICKEYBLOB: u8 = 0x06;
/// `RSA1` magic (little-endian `0x31415352`).
const RSA1: &[u8; 4] = b"RSA1";
/// `CALG_RSA_KEYX`, the algorithm id `ExportCspBlob` writes for exchange keys.
const CALG_RSA_KEYX: u32 = 0x0000_a400;

/// A shared AES-256 key, zeroized on drop.
pub type AesKey = Zeroizing<[u8; AES_KEY_LEN]>;

/// Why a key could not be read or a value not be sealed or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// The public key is not base64.
    #[error("guest public key is not base64")]
    KeyEncoding,
    /// The public key is neither a CAPI public key blob nor PKCS#1 DER.
    #[error("guest public key is not a capi publickeyblob or pkcs1 der rsa public key: {0}")]
    KeyFormat(String),
    /// RSA failed (key too small for the payload, bad padding on decrypt, ...).
    #[error("rsa operation failed")]
    Rsa,
    /// A ciphertext is not base64 or is shorter than an IV plus one block.
    #[error("ciphertext is malformed")]
    Ciphertext,
    /// Decryption failed (wrong key or corrupt data: bad padding).
    #[error("decryption failed")]
    Decrypt,
    /// A decrypted value is not UTF-8.
    #[error("decrypted value is not utf-8")]
    Utf8,
    /// A value is too long for the protocol.
    #[error(transparent)]
    Kvp(#[from] KvpError),
}

/// The wire format a guest published its key in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// CAPI `PUBLICKEYBLOB` (`RSACryptoServiceProvider.ExportCspBlob(false)`, Windows guests).
    CapiBlob,
    /// CNG `BCRYPT_RSAPUBLIC_BLOB` (`RSA1` header first).
    CngBlob,
    /// PKCS#1 DER `RSAPublicKey` (`openssl rsa -RSAPublicKey_out -outform DER`, Linux guests).
    Pkcs1Der,
}

/// A guest's RSA public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPublicKey {
    key: RsaPublicKey,
    format: KeyFormat,
}

fn u32_le(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn bad(msg: &str) -> CryptoError {
    CryptoError::KeyFormat(msg.to_string())
}

fn rsa_key(n: BigUint, e: BigUint) -> Result<RsaPublicKey, CryptoError> {
    RsaPublicKey::new(n, e).map_err(|e| CryptoError::KeyFormat(e.to_string()))
}

impl GuestPublicKey {
    /// Reads the base64 value of `hlvmm.meta.guest_provisioning_public_key` in any format a
    /// guest publishes (see [`KeyFormat`]).
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| CryptoError::KeyEncoding)?;
        Self::from_bytes(&bytes)
    }

    /// Reads a key from its raw bytes (see [`KeyFormat`]).
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        if b.first() == Some(&PUBLICKEYBLOB) && b.get(8..12) == Some(RSA1) {
            return Self::from_capi(b);
        }
        if b.get(0..4) == Some(RSA1) {
            return Self::from_cng(b);
        }
        if b.first() == Some(&0x30) {
            let key = RsaPublicKey::from_pkcs1_der(b)
                .map_err(|e| CryptoError::KeyFormat(e.to_string()))?;
            return Ok(GuestPublicKey {
                key,
                format: KeyFormat::Pkcs1Der,
            });
        }
        Err(bad("unknown key blob header"))
    }

    /// BLOBHEADER{bType, bVersion, reserved, aiKeyAlg} RSAPUBKEY{magic, bitlen, pubexp}
    /// modulus(bitlen/8, little-endian).
    fn from_capi(b: &[u8]) -> Result<Self, CryptoError> {
        let bitlen = u32_le(b, 12).ok_or_else(|| bad("truncated capi blob"))? as usize;
        let pubexp = u32_le(b, 16).ok_or_else(|| bad("truncated capi blob"))?;
        if bitlen == 0 || !bitlen.is_multiple_of(8) {
            return Err(bad("capi blob has an invalid bit length"));
        }
        let modulus = b
            .get(20..20 + bitlen / 8)
            .ok_or_else(|| bad("capi blob is shorter than its modulus"))?;
        let key = rsa_key(BigUint::from_bytes_le(modulus), BigUint::from(pubexp))?;
        Ok(GuestPublicKey {
            key,
            format: KeyFormat::CapiBlob,
        })
    }

    /// BCRYPT_RSAKEY_BLOB{Magic, BitLength, cbPublicExp, cbModulus, cbPrime1, cbPrime2}
    /// exponent(big-endian) modulus(big-endian).
    fn from_cng(b: &[u8]) -> Result<Self, CryptoError> {
        let field = |at| u32_le(b, at).ok_or_else(|| bad("truncated cng blob"));
        let cb_exp = field(8)? as usize;
        let cb_mod = field(12)? as usize;
        let exp = b
            .get(24..24 + cb_exp)
            .ok_or_else(|| bad("truncated cng blob"))?;
        let modulus = b
            .get(24 + cb_exp..24 + cb_exp + cb_mod)
            .ok_or_else(|| bad("truncated cng blob"))?;
        let key = rsa_key(BigUint::from_bytes_be(modulus), BigUint::from_bytes_be(exp))?;
        Ok(GuestPublicKey {
            key,
            format: KeyFormat::CngBlob,
        })
    }

    /// The format it was read from.
    pub fn format(&self) -> KeyFormat {
        self.format
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.key.size() * 8
    }

    /// Wraps an AES key with RSA PKCS#1 v1.5; base64.
    pub fn wrap_key(&self, key: &[u8]) -> Result<String, CryptoError> {
        let wrapped = self
            .key
            .encrypt(&mut rand::rngs::OsRng, Pkcs1v15Encrypt, key)
            .map_err(|_| CryptoError::Rsa)?;
        Ok(B64.encode(wrapped))
    }
}

/// Encodes a public key as a CAPI `PUBLICKEYBLOB` (what a Windows guest publishes).
pub fn capi_blob(key: &RsaPublicKey) -> Vec<u8> {
    let modulus = key.n().to_bytes_le();
    let bits = key.size() * 8;
    let mut out = Vec::with_capacity(20 + key.size());
    out.extend_from_slice(&[PUBLICKEYBLOB, 0x02, 0, 0]);
    out.extend_from_slice(&CALG_RSA_KEYX.to_le_bytes());
    out.extend_from_slice(RSA1);
    out.extend_from_slice(&(bits as u32).to_le_bytes());
    let e = key.e().to_bytes_le();
    let mut exp = [0u8; 4];
    for (d, s) in exp.iter_mut().zip(e.iter()) {
        *d = *s;
    }
    out.extend_from_slice(&exp);
    out.extend_from_slice(&modulus);
    out.resize(20 + key.size(), 0);
    out
}

/// Encodes a public key as PKCS#1 DER (what a Linux guest publishes).
pub fn pkcs1_der(key: &RsaPublicKey) -> Result<Vec<u8>, CryptoError> {
    key.to_pkcs1_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|_| CryptoError::Rsa)
}

/// A fresh random AES-256 key.
pub fn generate_aes_key() -> AesKey {
    let mut k = Zeroizing::new([0u8; AES_KEY_LEN]);
    rand::rngs::OsRng.fill_bytes(&mut k[..]);
    k
}

/// Encrypts one value: `base64(IV || AES-256-CBC/PKCS7(UTF-8 value))` with a fresh random IV.
pub fn encrypt_value(key: &[u8; AES_KEY_LEN], plaintext: &str) -> String {
    let mut iv = [0u8; IV_LEN];
    rand::rngs::OsRng.fill_bytes(&mut iv);
    let ct = cbc::Encryptor::<Aes256>::new(key.into(), &iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext.as_bytes());
    let mut out = Vec::with_capacity(IV_LEN + ct.len());
    out.extend_from_slice(&iv);
    out.extend_from_slice(&ct);
    B64.encode(out)
}

/// Decrypts one value written by [`encrypt_value`].
pub fn decrypt_value(key: &[u8; AES_KEY_LEN], value: &str) -> Result<String, CryptoError> {
    let raw = B64
        .decode(value.trim())
        .map_err(|_| CryptoError::Ciphertext)?;
    if raw.len() < IV_LEN * 2 || !raw.len().is_multiple_of(IV_LEN) {
        return Err(CryptoError::Ciphertext);
    }
    let (iv, ct) = raw.split_at(IV_LEN);
    let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| CryptoError::Ciphertext)?;
    let mut pt = cbc::Decryptor::<Aes256>::new(key.into(), &iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(ct)
        .map_err(|_| CryptoError::Decrypt)?;
    let text = std::str::from_utf8(&pt)
        .map(str::to_string)
        .map_err(|_| CryptoError::Utf8);
    pt.zeroize();
    text
}

/// Unwraps the base64 `shared_aes_key` with the guest's private key (PKCS#1 v1.5).
pub fn unwrap_key(private: &RsaPrivateKey, wrapped_b64: &str) -> Result<AesKey, CryptoError> {
    let wrapped = B64
        .decode(wrapped_b64.trim())
        .map_err(|_| CryptoError::Ciphertext)?;
    let mut raw = private
        .decrypt(Pkcs1v15Encrypt, &wrapped)
        .map_err(|_| CryptoError::Rsa)?;
    let mut key = Zeroizing::new([0u8; AES_KEY_LEN]);
    let ok = raw.len() == AES_KEY_LEN;
    if ok {
        key.copy_from_slice(&raw);
    }
    raw.zeroize();
    if ok {
        Ok(key)
    } else {
        Err(CryptoError::Rsa)
    }
}

/// Every host item to write for `data` (plaintext `hlvmm.data.*` items, e.g. from
/// [`super::data_items`]): `hlvmm.meta.provisioning_system_checksum`, `hlvmm.meta.shared_aes_key`
/// and each non-empty value encrypted, chunked into `._N` items above 100 characters.
/// The AES key is zeroized before this returns.
pub fn seal(
    guest: &GuestPublicKey,
    data: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, CryptoError> {
    let mut out = BTreeMap::new();
    out.insert(meta::CHECKSUM.to_string(), checksum(data));
    let key = generate_aes_key();
    out.insert(meta::SHARED_AES_KEY.to_string(), guest.wrap_key(&key[..])?);
    for (k, v) in data.iter().filter(|(_, v)| !v.is_empty()) {
        for (item, piece) in chunk(k, v)? {
            out.insert(item, encrypt_value(&key, &piece));
        }
    }
    Ok(out)
}

/// Why a guest could not open the provisioning data; [`OpenError::summary`] is the guest's
/// `hlvmm.meta.guest_provisioning_error` text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// No or an undecryptable `shared_aes_key`.
    #[error("error decrypting:shared_aes_key")]
    SharedKey,
    /// A data item did not decrypt.
    #[error("error decrypting:provisioning_data")]
    Data,
    /// The checksum is missing or does not match the decrypted data.
    #[error("error validating:checksum")]
    Checksum,
}

impl OpenError {
    /// The guest's error summary (`error validating:checksum`, ...).
    pub fn summary(&self) -> String {
        self.to_string()
    }
}

/// The guest side of the exchange: unwraps the AES key, decrypts every `hlvmm.data.*` item
/// (reassembling `._N` chunks, the base key first), and verifies the checksum. Returns the
/// plaintext items by KVP key.
pub fn open(
    private: &RsaPrivateKey,
    host_items: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, OpenError> {
    let wrapped = host_items
        .get(meta::SHARED_AES_KEY)
        .ok_or(OpenError::SharedKey)?;
    let key = unwrap_key(private, wrapped).map_err(|_| OpenError::SharedKey)?;
    let mut bases: Vec<&str> = host_items
        .keys()
        .filter(|k| k.starts_with(DATA_PREFIX))
        .map(|k| match k.rsplit_once("._") {
            Some((base, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => base,
            _ => k.as_str(),
        })
        .collect();
    bases.sort_unstable();
    bases.dedup();
    let mut plain = BTreeMap::new();
    for base in bases {
        let value = match host_items.get(base) {
            Some(v) => decrypt_value(&key, v).map_err(|_| OpenError::Data)?,
            None => {
                let mut out = String::new();
                for i in 0..MAX_CHUNKS {
                    let Some(part) = host_items.get(&format!("{base}._{i}")) else {
                        break;
                    };
                    out.push_str(&decrypt_value(&key, part).map_err(|_| OpenError::Data)?);
                }
                out
            }
        };
        plain.insert(base.to_string(), value);
    }
    match host_items.get(meta::CHECKSUM) {
        Some(sum) if *sum == checksum(&plain) => Ok(plain),
        _ => Err(OpenError::Checksum),
    }
}

#[cfg(test)]
mod tests;
