//! NTLMv2 (MS-NLMP) for both ends of a connection, and MS-WSMV message encryption.
//!
//! - [`NtlmInitiator`] (the client): NEGOTIATE → (server CHALLENGE) → AUTHENTICATE with an
//!   NTLMv2 response, extended session security, 128-bit keys, key exchange and a MIC.
//! - [`NtlmAcceptor`] (the server side, used by the simulator): CHALLENGE for a NEGOTIATE,
//!   then verifies the AUTHENTICATE message (NTProofStr and MIC) against a password lookup.
//! - [`NtlmSession`]: connection-oriented sealing with RC4 and HMAC-MD5 signatures (MS-NLMP
//!   3.4.4.2 / 3.4.3); one RC4 state per direction that lives as long as the TCP connection.
//! - [`seal_body`] / [`unseal_body`]: the MS-WSMV 2.2.9.1.1 framing
//!   `multipart/encrypted; protocol="application/HTTP-SPNEGO-session-encrypted"`, with the
//!   closing boundary directly after the sealed payload (no CRLF), as Windows sends it.
//!
//! Only NTLMv2 with extended session security is supported (what every current Windows
//! negotiates); NTLMv1 and LM are refused. Passwords and keys never appear in `Debug` output
//! or errors.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac as _};
use md4::{Digest as _, Md4};
use md5::Md5;
use rand::RngCore as _;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
const REQUEST_TARGET: u32 = 0x0000_0004;
const NEGOTIATE_SIGN: u32 = 0x0000_0010;
const NEGOTIATE_SEAL: u32 = 0x0000_0020;
const NEGOTIATE_NTLM: u32 = 0x0000_0200;
const NEGOTIATE_ALWAYS_SIGN: u32 = 0x0000_8000;
const TARGET_TYPE_SERVER: u32 = 0x0002_0000;
const NEGOTIATE_EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
const NEGOTIATE_VERSION: u32 = 0x0200_0000;
const NEGOTIATE_128: u32 = 0x2000_0000;
const NEGOTIATE_KEY_EXCH: u32 = 0x4000_0000;
const NEGOTIATE_56: u32 = 0x8000_0000;

/// What the initiator asks for.
const CLIENT_FLAGS: u32 = NEGOTIATE_UNICODE
    | REQUEST_TARGET
    | NEGOTIATE_SIGN
    | NEGOTIATE_SEAL
    | NEGOTIATE_NTLM
    | NEGOTIATE_ALWAYS_SIGN
    | NEGOTIATE_EXTENDED_SESSIONSECURITY
    | NEGOTIATE_TARGET_INFO
    | NEGOTIATE_VERSION
    | NEGOTIATE_128
    | NEGOTIATE_KEY_EXCH
    | NEGOTIATE_56;

/// What the acceptor is willing to grant (intersected with the request).
const SERVER_FLAGS: u32 = CLIENT_FLAGS;

/// AV pair ids (MS-NLMP 2.2.2.1).
const AV_EOL: u16 = 0;
const AV_NB_COMPUTER: u16 = 1;
const AV_NB_DOMAIN: u16 = 2;
const AV_DNS_COMPUTER: u16 = 3;
const AV_DNS_DOMAIN: u16 = 4;
const AV_FLAGS: u16 = 6;
const AV_TIMESTAMP: u16 = 7;
const AV_CHANNEL_BINDINGS: u16 = 10;
/// `MsvAvFlags` bit: the AUTHENTICATE message carries a MIC.
const AV_FLAG_MIC: u32 = 0x2;

/// Offset of the MIC in an AUTHENTICATE message (after the version field).
const MIC_OFFSET: usize = 72;
/// Header size of an AUTHENTICATE message with version and MIC.
const AUTH_HEADER_LEN: usize = 88;

/// Version field: Windows 10.0 build 20348, NTLM revision 15.
const VERSION: [u8; 8] = [10, 0, 0x7c, 0x4f, 0, 0, 0, 0x0f];

const CLIENT_SIGN_MAGIC: &[u8] = b"session key to client-to-server signing key magic constant\0";
const SERVER_SIGN_MAGIC: &[u8] = b"session key to server-to-client signing key magic constant\0";
const CLIENT_SEAL_MAGIC: &[u8] = b"session key to client-to-server sealing key magic constant\0";
const SERVER_SEAL_MAGIC: &[u8] = b"session key to server-to-client sealing key magic constant\0";

/// Errors of the NTLM layer. Messages never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NtlmError {
    /// A message could not be parsed (wrong signature, type, or out-of-range fields).
    #[error("malformed ntlm {0} message")]
    Malformed(&'static str),
    /// The peer negotiated something this implementation does not do (NTLMv1, no sealing, …).
    #[error("unsupported ntlm negotiation: {0}")]
    Unsupported(&'static str),
    /// The credentials did not verify (unknown user or wrong password).
    #[error("ntlm authentication failed")]
    AuthenticationFailed,
    /// The AUTHENTICATE message's MIC did not verify.
    #[error("ntlm message integrity check failed")]
    BadMic,
    /// A sealed message's signature did not verify (tampering or lost sync).
    #[error("ntlm message signature mismatch")]
    BadSignature,
    /// A `multipart/encrypted` body did not follow MS-WSMV framing.
    #[error("malformed encrypted winrm body: {0}")]
    Framing(&'static str),
}

/// NTLM credentials. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct NtlmCredentials {
    /// The account name (`user`, or `user@domain` with an empty domain).
    pub username: String,
    /// The password.
    pub password: String,
    /// The domain (or host name for local accounts); may be empty.
    pub domain: String,
}

impl NtlmCredentials {
    /// Credentials from a user name, password and domain. A `DOMAIN\user` user name with an
    /// empty `domain` is split into its parts.
    pub fn new(username: &str, password: &str, domain: &str) -> Self {
        let (domain, username) = match (domain.is_empty(), username.split_once('\\')) {
            (true, Some((d, u))) => (d.to_owned(), u.to_owned()),
            _ => (domain.to_owned(), username.to_owned()),
        };
        NtlmCredentials {
            username,
            password: password.to_owned(),
            domain,
        }
    }
}

impl fmt::Debug for NtlmCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NtlmCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("domain", &self.domain)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Primitives

/// RC4 (used by NTLM sealing and key exchange; not a general-purpose cipher).
#[derive(Clone)]
struct Rc4 {
    s: [u8; 256],
    i: u8,
    j: u8,
}

impl Rc4 {
    fn new(key: &[u8]) -> Self {
        let mut s = [0u8; 256];
        for (i, b) in s.iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut j: u8 = 0;
        for i in 0..256 {
            j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
            s.swap(i, usize::from(j));
        }
        Rc4 { s, i: 0, j: 0 }
    }

    fn apply(&mut self, data: &mut [u8]) {
        for byte in data {
            self.i = self.i.wrapping_add(1);
            self.j = self.j.wrapping_add(self.s[usize::from(self.i)]);
            self.s.swap(usize::from(self.i), usize::from(self.j));
            let k = self.s[usize::from(
                self.s[usize::from(self.i)].wrapping_add(self.s[usize::from(self.j)]),
            )];
            *byte ^= k;
        }
    }
}

fn rc4_once(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    Rc4::new(key).apply(&mut out);
    out
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // HMAC accepts keys of any length; the error branch cannot happen.
    let mut mac = match <Hmac<Md5>>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 16],
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn from_utf16le(b: &[u8], what: &'static str) -> Result<String, NtlmError> {
    if !b.len().is_multiple_of(2) {
        return Err(NtlmError::Malformed(what));
    }
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| NtlmError::Malformed(what))
}

/// NTOWFv2 (MS-NLMP 3.3.2).
fn ntowf_v2(password: &str, user: &str, domain: &str) -> [u8; 16] {
    let nt_hash: [u8; 16] = Md4::digest(utf16le(password)).into();
    let identity = utf16le(&format!("{}{}", user.to_uppercase(), domain));
    hmac_md5(&nt_hash, &[&identity])
}

fn filetime_now() -> [u8; 8] {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() / 100)
        .unwrap_or(0);
    let ft = (since_epoch + 116_444_736_000_000_000) as u64;
    ft.to_le_bytes()
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::thread_rng().fill_bytes(&mut b);
    b
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads a (len, maxlen, offset) field descriptor at `at` and returns the payload it names.
fn field<'a>(msg: &'a [u8], at: usize, what: &'static str) -> Result<&'a [u8], NtlmError> {
    let len = usize::from(u16_at(msg, at).ok_or(NtlmError::Malformed(what))?);
    let offset = u32_at(msg, at + 4).ok_or(NtlmError::Malformed(what))? as usize;
    if len == 0 {
        return Ok(&[]);
    }
    msg.get(offset..offset.checked_add(len).ok_or(NtlmError::Malformed(what))?)
        .ok_or(NtlmError::Malformed(what))
}

fn check_header(msg: &[u8], kind: u32, what: &'static str) -> Result<(), NtlmError> {
    if msg.get(..8) != Some(SIGNATURE.as_slice()) || u32_at(msg, 8) != Some(kind) {
        return Err(NtlmError::Malformed(what));
    }
    Ok(())
}

/// Builds a message: fixed header (with zeroed field descriptors at `fields`) plus payloads.
struct MsgBuilder {
    head: Vec<u8>,
    payload: Vec<u8>,
    head_len: usize,
}

impl MsgBuilder {
    fn new(head: Vec<u8>, head_len: usize) -> Self {
        MsgBuilder {
            head,
            payload: Vec::new(),
            head_len,
        }
    }

    /// Writes the descriptor at `at` for `data`, appending it to the payload.
    fn put(&mut self, at: usize, data: &[u8]) {
        let offset = (self.head_len + self.payload.len()) as u32;
        let len = data.len() as u16;
        self.head[at..at + 2].copy_from_slice(&len.to_le_bytes());
        self.head[at + 2..at + 4].copy_from_slice(&len.to_le_bytes());
        self.head[at + 4..at + 8].copy_from_slice(&offset.to_le_bytes());
        self.payload.extend_from_slice(data);
    }

    fn finish(mut self) -> Vec<u8> {
        self.head.extend_from_slice(&self.payload);
        self.head
    }
}

/// AV pairs as (id, value) without the terminating EOL.
fn parse_av_pairs(mut b: &[u8]) -> Result<Vec<(u16, Vec<u8>)>, NtlmError> {
    let mut out = Vec::new();
    loop {
        let id = u16_at(b, 0).ok_or(NtlmError::Malformed("target info"))?;
        let len = usize::from(u16_at(b, 2).ok_or(NtlmError::Malformed("target info"))?);
        if id == AV_EOL {
            return Ok(out);
        }
        let value = b
            .get(4..4 + len)
            .ok_or(NtlmError::Malformed("target info"))?;
        out.push((id, value.to_vec()));
        b = &b[4 + len..];
    }
}

fn encode_av_pairs(pairs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, value) in pairs {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

// ---------------------------------------------------------------------------------------------
// Session security

/// Signing and sealing state of one authenticated connection (both directions).
pub struct NtlmSession {
    out_sign: [u8; 16],
    out_seal: Rc4,
    out_seq: u32,
    in_sign: [u8; 16],
    in_seal: Rc4,
    in_seq: u32,
    key_exch: bool,
}

impl fmt::Debug for NtlmSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NtlmSession")
            .field("out_seq", &self.out_seq)
            .field("in_seq", &self.in_seq)
            .finish_non_exhaustive()
    }
}

impl NtlmSession {
    fn new(exported_key: &[u8; 16], flags: u32, initiator: bool) -> Self {
        let c_sign = md5(&[exported_key, CLIENT_SIGN_MAGIC]);
        let s_sign = md5(&[exported_key, SERVER_SIGN_MAGIC]);
        let c_seal = md5(&[exported_key, CLIENT_SEAL_MAGIC]);
        let s_seal = md5(&[exported_key, SERVER_SEAL_MAGIC]);
        let (out_sign, out_seal, in_sign, in_seal) = if initiator {
            (c_sign, c_seal, s_sign, s_seal)
        } else {
            (s_sign, s_seal, c_sign, c_seal)
        };
        NtlmSession {
            out_sign,
            out_seal: Rc4::new(&out_seal),
            out_seq: 0,
            in_sign,
            in_seal: Rc4::new(&in_seal),
            in_seq: 0,
            key_exch: flags & NEGOTIATE_KEY_EXCH != 0,
        }
    }

    /// Seals `message` for the peer: returns the 16-byte signature and the ciphertext (same
    /// length as `message`).
    pub fn wrap(&mut self, message: &[u8]) -> ([u8; 16], Vec<u8>) {
        let seq = self.out_seq.to_le_bytes();
        let mut sealed = message.to_vec();
        self.out_seal.apply(&mut sealed);
        let mut checksum: [u8; 8] = first8(&hmac_md5(&self.out_sign, &[&seq, message]));
        if self.key_exch {
            self.out_seal.apply(&mut checksum);
        }
        self.out_seq = self.out_seq.wrapping_add(1);
        (signature(&checksum, &seq), sealed)
    }

    /// Unseals a message from the peer and verifies its signature.
    pub fn unwrap(&mut self, signature_bytes: &[u8], sealed: &[u8]) -> Result<Vec<u8>, NtlmError> {
        let seq = self.in_seq.to_le_bytes();
        let mut message = sealed.to_vec();
        self.in_seal.apply(&mut message);
        let mut checksum: [u8; 8] = first8(&hmac_md5(&self.in_sign, &[&seq, &message]));
        if self.key_exch {
            self.in_seal.apply(&mut checksum);
        }
        self.in_seq = self.in_seq.wrapping_add(1);
        if signature_bytes != signature(&checksum, &seq) {
            return Err(NtlmError::BadSignature);
        }
        Ok(message)
    }
}

fn first8(b: &[u8; 16]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&b[..8]);
    out
}

fn signature(checksum: &[u8; 8], seq: &[u8; 4]) -> [u8; 16] {
    let mut sig = [0u8; 16];
    sig[..4].copy_from_slice(&1u32.to_le_bytes());
    sig[4..12].copy_from_slice(checksum);
    sig[12..].copy_from_slice(seq);
    sig
}

fn check_flags(flags: u32) -> Result<(), NtlmError> {
    if flags & NEGOTIATE_EXTENDED_SESSIONSECURITY == 0 {
        return Err(NtlmError::Unsupported(
            "extended session security is required",
        ));
    }
    if flags & NEGOTIATE_UNICODE == 0 {
        return Err(NtlmError::Unsupported("unicode is required"));
    }
    if flags & NEGOTIATE_128 == 0 {
        return Err(NtlmError::Unsupported("128-bit keys are required"));
    }
    if flags & NEGOTIATE_SEAL == 0 || flags & NEGOTIATE_SIGN == 0 {
        return Err(NtlmError::Unsupported("signing and sealing are required"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Initiator

/// The client side of one NTLM handshake.
pub struct NtlmInitiator {
    creds: NtlmCredentials,
    negotiate: Vec<u8>,
    channel_bindings: Option<[u8; 16]>,
}

impl fmt::Debug for NtlmInitiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NtlmInitiator")
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }
}

impl NtlmInitiator {
    /// A new handshake for `creds`.
    pub fn new(creds: NtlmCredentials) -> Self {
        NtlmInitiator {
            creds,
            negotiate: Vec::new(),
            channel_bindings: None,
        }
    }

    /// Binds the authentication to a TLS channel (Extended Protection for Authentication):
    /// `hash` is [`tls_channel_bindings`] of the server certificate.
    pub fn with_channel_bindings(mut self, hash: [u8; 16]) -> Self {
        self.channel_bindings = Some(hash);
        self
    }

    /// The NEGOTIATE message (type 1). Call once, first.
    pub fn negotiate(&mut self) -> Vec<u8> {
        let mut m = Vec::with_capacity(40);
        m.extend_from_slice(SIGNATURE);
        m.extend_from_slice(&1u32.to_le_bytes());
        m.extend_from_slice(&CLIENT_FLAGS.to_le_bytes());
        m.extend_from_slice(&[0u8; 16]); // domain and workstation: none
        m.extend_from_slice(&VERSION);
        self.negotiate = m.clone();
        m
    }

    /// Answers the server's CHALLENGE (type 2) with the AUTHENTICATE message (type 3) and
    /// returns the session that seals the following messages.
    pub fn authenticate(&self, challenge: &[u8]) -> Result<(Vec<u8>, NtlmSession), NtlmError> {
        check_header(challenge, 2, "challenge")?;
        let flags = u32_at(challenge, 20).ok_or(NtlmError::Malformed("challenge"))?;
        let server_challenge = challenge
            .get(24..32)
            .ok_or(NtlmError::Malformed("challenge"))?;
        check_flags(flags)?;
        let target_info = if flags & NEGOTIATE_TARGET_INFO != 0 {
            field(challenge, 40, "challenge")?
        } else {
            &[]
        };
        let mut pairs = if target_info.is_empty() {
            Vec::new()
        } else {
            parse_av_pairs(target_info)?
        };
        let server_time = pairs
            .iter()
            .find(|(id, _)| *id == AV_TIMESTAMP)
            .and_then(|(_, v)| <[u8; 8]>::try_from(v.as_slice()).ok());
        let with_mic = server_time.is_some();
        if with_mic {
            match pairs.iter_mut().find(|(id, _)| *id == AV_FLAGS) {
                Some((_, v)) => {
                    let old = u32_at(v, 0).unwrap_or(0);
                    *v = (old | AV_FLAG_MIC).to_le_bytes().to_vec();
                }
                None => pairs.push((AV_FLAGS, AV_FLAG_MIC.to_le_bytes().to_vec())),
            }
        }
        if let Some(hash) = self.channel_bindings {
            pairs.retain(|(id, _)| *id != AV_CHANNEL_BINDINGS);
            pairs.push((AV_CHANNEL_BINDINGS, hash.to_vec()));
        }
        let time = server_time.unwrap_or_else(filetime_now);
        let client_challenge: [u8; 8] = random();

        let key_nt = ntowf_v2(
            &self.creds.password,
            &self.creds.username,
            &self.creds.domain,
        );
        let mut temp = vec![1, 1, 0, 0, 0, 0, 0, 0];
        temp.extend_from_slice(&time);
        temp.extend_from_slice(&client_challenge);
        temp.extend_from_slice(&[0; 4]);
        temp.extend_from_slice(&encode_av_pairs(&pairs));
        temp.extend_from_slice(&[0; 4]);
        let nt_proof = hmac_md5(&key_nt, &[server_challenge, &temp]);
        let mut nt_response = nt_proof.to_vec();
        nt_response.extend_from_slice(&temp);
        let lm_response = if with_mic {
            vec![0u8; 24]
        } else {
            let mut lm = hmac_md5(&key_nt, &[server_challenge, &client_challenge]).to_vec();
            lm.extend_from_slice(&client_challenge);
            lm
        };
        let session_base_key = hmac_md5(&key_nt, &[&nt_proof]);
        let (exported, encrypted_key) = if flags & NEGOTIATE_KEY_EXCH != 0 {
            let exported: [u8; 16] = random();
            (exported, rc4_once(&session_base_key, &exported))
        } else {
            (session_base_key, Vec::new())
        };

        let mut head = vec![0u8; AUTH_HEADER_LEN];
        head[..8].copy_from_slice(SIGNATURE);
        head[8..12].copy_from_slice(&3u32.to_le_bytes());
        head[60..64].copy_from_slice(&flags.to_le_bytes());
        head[64..72].copy_from_slice(&VERSION);
        let mut b = MsgBuilder::new(head, AUTH_HEADER_LEN);
        b.put(28, &utf16le(&self.creds.domain));
        b.put(36, &utf16le(&self.creds.username));
        b.put(44, &[]);
        b.put(12, &lm_response);
        b.put(20, &nt_response);
        b.put(52, &encrypted_key);
        let mut msg = b.finish();
        if with_mic {
            let mic = hmac_md5(&exported, &[&self.negotiate, challenge, &msg]);
            msg[MIC_OFFSET..MIC_OFFSET + 16].copy_from_slice(&mic);
        }
        Ok((msg, NtlmSession::new(&exported, flags, true)))
    }
}

/// The `MsvAvChannelBindings` value for a TLS server certificate (DER): the MD5 of a
/// `gss_channel_bindings_struct` whose application data is `tls-server-end-point:` followed by
/// the certificate hash of RFC 5929 (SHA-256, or SHA-384/512 when the certificate is signed
/// with those).
pub fn tls_channel_bindings(cert_der: &[u8]) -> [u8; 16] {
    use sha2::Digest as _;
    let hash = match signature_hash(cert_der) {
        CertHash::Sha384 => sha2::Sha384::digest(cert_der).to_vec(),
        CertHash::Sha512 => sha2::Sha512::digest(cert_der).to_vec(),
        CertHash::Sha256 => sha2::Sha256::digest(cert_der).to_vec(),
    };
    let mut app = b"tls-server-end-point:".to_vec();
    app.extend_from_slice(&hash);
    let mut packed = vec![0u8; 16]; // initiator and acceptor address types and addresses: none
    packed.extend_from_slice(&(app.len() as u32).to_le_bytes());
    packed.extend_from_slice(&app);
    md5(&[&packed])
}

enum CertHash {
    Sha256,
    Sha384,
    Sha512,
}

/// One DER TLV at the start of `b`: (tag, content, rest).
fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = b
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        (len, 2 + n)
    };
    let content = b.get(header..header.checked_add(len)?)?;
    Some((tag, content, &b[header + len..]))
}

/// The hash RFC 5929 prescribes for a certificate: its signature's hash, but SHA-256 for
/// MD5/SHA-1 and anything unrecognised.
fn signature_hash(cert_der: &[u8]) -> CertHash {
    const SHA384_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
    const SHA512_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
    const SHA384_ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    const SHA512_ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
    let oid = der_tlv(cert_der)
        .and_then(|(_, cert, _)| der_tlv(cert))
        .and_then(|(_, _tbs, rest)| der_tlv(rest))
        .and_then(|(_, alg, _)| der_tlv(alg))
        .filter(|(tag, _, _)| *tag == 0x06)
        .map(|(_, oid, _)| oid);
    match oid {
        Some(o) if o == SHA384_RSA || o == SHA384_ECDSA => CertHash::Sha384,
        Some(o) if o == SHA512_RSA || o == SHA512_ECDSA => CertHash::Sha512,
        _ => CertHash::Sha256,
    }
}

// ---------------------------------------------------------------------------------------------
// Acceptor

/// Who authenticated, as the AUTHENTICATE message named them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtlmIdentity {
    /// The user name as sent.
    pub username: String,
    /// The domain as sent (may be empty).
    pub domain: String,
}

/// The server side of one NTLM handshake.
pub struct NtlmAcceptor {
    target_name: String,
    server_challenge: [u8; 8],
    negotiate: Vec<u8>,
    challenge: Vec<u8>,
}

impl fmt::Debug for NtlmAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NtlmAcceptor")
            .field("target_name", &self.target_name)
            .finish_non_exhaustive()
    }
}

impl NtlmAcceptor {
    /// A new handshake; `target_name` is announced as NetBIOS computer and domain name.
    pub fn new(target_name: &str) -> Self {
        NtlmAcceptor {
            target_name: target_name.to_ascii_uppercase(),
            server_challenge: random(),
            negotiate: Vec::new(),
            challenge: Vec::new(),
        }
    }

    /// Answers a NEGOTIATE message (type 1) with a CHALLENGE (type 2).
    pub fn challenge(&mut self, negotiate: &[u8]) -> Result<Vec<u8>, NtlmError> {
        check_header(negotiate, 1, "negotiate")?;
        let requested = u32_at(negotiate, 12).ok_or(NtlmError::Malformed("negotiate"))?;
        let mut flags = (requested & SERVER_FLAGS) | NEGOTIATE_NTLM | TARGET_TYPE_SERVER;
        flags |= NEGOTIATE_TARGET_INFO | NEGOTIATE_VERSION;
        check_flags(flags)?;
        let name = utf16le(&self.target_name);
        let lower = utf16le(&self.target_name.to_ascii_lowercase());
        let info = encode_av_pairs(&[
            (AV_NB_DOMAIN, name.clone()),
            (AV_NB_COMPUTER, name.clone()),
            (AV_DNS_DOMAIN, lower.clone()),
            (AV_DNS_COMPUTER, lower),
            (AV_TIMESTAMP, filetime_now().to_vec()),
        ]);
        let mut head = vec![0u8; 56];
        head[..8].copy_from_slice(SIGNATURE);
        head[8..12].copy_from_slice(&2u32.to_le_bytes());
        head[20..24].copy_from_slice(&flags.to_le_bytes());
        head[24..32].copy_from_slice(&self.server_challenge);
        head[48..56].copy_from_slice(&VERSION);
        let mut b = MsgBuilder::new(head, 56);
        b.put(12, &name);
        b.put(40, &info);
        let msg = b.finish();
        self.negotiate = negotiate.to_vec();
        self.challenge = msg.clone();
        Ok(msg)
    }

    /// Verifies an AUTHENTICATE message (type 3). `password_for(username, domain)` returns
    /// the account's password, or `None` for an unknown account.
    pub fn authenticate(
        &self,
        auth: &[u8],
        password_for: impl Fn(&str, &str) -> Option<String>,
    ) -> Result<(NtlmIdentity, NtlmSession), NtlmError> {
        if self.challenge.is_empty() {
            return Err(NtlmError::Malformed("authenticate (no challenge sent)"));
        }
        check_header(auth, 3, "authenticate")?;
        let flags = u32_at(auth, 60).ok_or(NtlmError::Malformed("authenticate"))?;
        check_flags(flags)?;
        let nt = field(auth, 20, "authenticate")?;
        if nt.len() < 16 + 28 {
            return Err(NtlmError::Unsupported("only ntlmv2 responses are accepted"));
        }
        let domain = from_utf16le(field(auth, 28, "authenticate")?, "authenticate")?;
        let username = from_utf16le(field(auth, 36, "authenticate")?, "authenticate")?;
        let password = password_for(&username, &domain).ok_or(NtlmError::AuthenticationFailed)?;
        let (nt_proof, temp) = nt.split_at(16);
        let key_nt = ntowf_v2(&password, &username, &domain);
        let expected = hmac_md5(&key_nt, &[&self.server_challenge, temp]);
        if expected.as_slice() != nt_proof {
            return Err(NtlmError::AuthenticationFailed);
        }
        let session_base_key = hmac_md5(&key_nt, &[nt_proof]);
        let exported: [u8; 16] = if flags & NEGOTIATE_KEY_EXCH != 0 {
            let enc = field(auth, 52, "authenticate")?;
            <[u8; 16]>::try_from(rc4_once(&session_base_key, enc).as_slice())
                .map_err(|_| NtlmError::Malformed("authenticate session key"))?
        } else {
            session_base_key
        };
        // temp = header (8) + time (8) + client challenge (8) + zero (4) + AV pairs + zero (4).
        let pairs = parse_av_pairs(&temp[28..])?;
        let has_mic = pairs
            .iter()
            .any(|(id, v)| *id == AV_FLAGS && u32_at(v, 0).unwrap_or(0) & AV_FLAG_MIC != 0);
        if has_mic {
            let sent = auth
                .get(MIC_OFFSET..MIC_OFFSET + 16)
                .ok_or(NtlmError::Malformed("authenticate"))?;
            let mut zeroed = auth.to_vec();
            zeroed[MIC_OFFSET..MIC_OFFSET + 16].fill(0);
            let mic = hmac_md5(&exported, &[&self.negotiate, &self.challenge, &zeroed]);
            if mic.as_slice() != sent {
                return Err(NtlmError::BadMic);
            }
        }
        Ok((
            NtlmIdentity { username, domain },
            NtlmSession::new(&exported, flags, false),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// MS-WSMV framing

/// `Content-Type` of a sealed WinRM body.
pub const ENCRYPTED_CONTENT_TYPE: &str = "multipart/encrypted;protocol=\"application/HTTP-SPNEGO-session-encrypted\";boundary=\"Encrypted Boundary\"";
/// The `protocol` parameter that marks an NTLM/SPNEGO-sealed body.
pub const ENCRYPTED_PROTOCOL: &str = "application/HTTP-SPNEGO-session-encrypted";
const BOUNDARY: &[u8] = b"--Encrypted Boundary";

/// Seals a SOAP envelope into an MS-WSMV `multipart/encrypted` body.
pub fn seal_body(session: &mut NtlmSession, soap: &[u8]) -> Vec<u8> {
    let (sig, sealed) = session.wrap(soap);
    let mut out = Vec::with_capacity(soap.len() + 256);
    out.extend_from_slice(BOUNDARY);
    out.extend_from_slice(b"\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n");
    out.extend_from_slice(
        format!(
            "\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={}\r\n",
            soap.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(BOUNDARY);
    out.extend_from_slice(b"\r\n\tContent-Type: application/octet-stream\r\n");
    out.extend_from_slice(&(sig.len() as u32).to_le_bytes());
    out.extend_from_slice(&sig);
    out.extend_from_slice(&sealed);
    out.extend_from_slice(BOUNDARY);
    out.extend_from_slice(b"--\r\n");
    out
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Unseals an MS-WSMV `multipart/encrypted` body (one encrypted part) and verifies it.
///
/// The sealed payload's length comes from `OriginalContent: …;Length=N`, so whatever follows
/// it (the closing boundary, with or without a CRLF before it) does not matter.
pub fn unseal_body(session: &mut NtlmSession, body: &[u8]) -> Result<Vec<u8>, NtlmError> {
    let first = find(body, BOUNDARY, 0).ok_or(NtlmError::Framing("no boundary"))?;
    let header_start = first + BOUNDARY.len();
    let second = find(body, BOUNDARY, header_start).ok_or(NtlmError::Framing("one part only"))?;
    let header = std::str::from_utf8(&body[header_start..second])
        .map_err(|_| NtlmError::Framing("header is not text"))?;
    if !header.contains(ENCRYPTED_PROTOCOL) {
        return Err(NtlmError::Framing("not an spnego-encrypted part"));
    }
    let length: usize = header
        .split("Length=")
        .nth(1)
        .map(|s| s.trim_start())
        .map(|s| s.split(|c: char| !c.is_ascii_digit()).next().unwrap_or(""))
        .and_then(|s| s.parse().ok())
        .ok_or(NtlmError::Framing("no original length"))?;
    // Skip the second boundary line and the part's Content-Type line.
    let after = second + BOUNDARY.len();
    let line1 = find(body, b"\r\n", after).ok_or(NtlmError::Framing("truncated"))? + 2;
    let payload_at = find(body, b"\r\n", line1).ok_or(NtlmError::Framing("truncated"))? + 2;
    let payload = &body[payload_at..];
    let sig_len = u32_at(payload, 0).ok_or(NtlmError::Framing("truncated"))? as usize;
    if sig_len != 16 {
        return Err(NtlmError::Framing("unexpected signature length"));
    }
    let sig = payload
        .get(4..20)
        .ok_or(NtlmError::Framing("truncated signature"))?;
    let sealed = payload
        .get(20..20 + length)
        .ok_or(NtlmError::Framing("payload shorter than its length"))?;
    session.unwrap(sig, sealed)
}

/// True when a `Content-Type` header value announces an NTLM/SPNEGO-sealed body.
pub fn is_encrypted_content_type(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    v.starts_with("multipart/encrypted") && v.contains(&ENCRYPTED_PROTOCOL.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(password_ok: bool) -> Result<(NtlmSession, NtlmSession, NtlmIdentity), NtlmError> {
        let mut client = NtlmInitiator::new(NtlmCredentials::new("HV01\\aetherv", "pw", ""));
        let mut server = NtlmAcceptor::new("sim");
        let t1 = client.negotiate();
        let t2 = server.challenge(&t1)?;
        let (t3, c) = client.authenticate(&t2)?;
        let (id, s) = server.authenticate(&t3, |u, _| {
            (u == "aetherv").then(|| if password_ok { "pw" } else { "other" }.to_owned())
        })?;
        Ok((c, s, id))
    }

    #[test]
    fn rc4_matches_the_rfc_6229_vector() {
        // RFC 6229, key 0x0102030405, first 16 keystream bytes.
        let ks = rc4_once(&[1, 2, 3, 4, 5], &[0u8; 16]);
        assert_eq!(
            ks,
            [
                0xb2, 0x39, 0x63, 0x05, 0xf0, 0x3d, 0xc0, 0x27, 0xcc, 0xc3, 0x52, 0x4a, 0x0a, 0x11,
                0x18, 0xa8
            ]
        );
    }

    #[test]
    fn ntowfv2_matches_ms_nlmp_4_2_4() {
        // MS-NLMP 4.2.4.1.1: User "User", UserDom "Domain", Passwd "Password".
        let k = ntowf_v2("Password", "User", "Domain");
        assert_eq!(
            k,
            [
                0x0c, 0x86, 0x8a, 0x40, 0x3b, 0xfd, 0x7a, 0x93, 0xa3, 0x00, 0x1e, 0xf2, 0x2e, 0xf0,
                0x2e, 0x3f
            ]
        );
    }

    #[test]
    fn both_ends_agree_and_seal_in_both_directions() {
        let (mut c, mut s, id) = handshake(true).unwrap();
        assert_eq!(id.username, "aetherv");
        assert_eq!(id.domain, "HV01");
        for i in 0..3 {
            let msg = format!("request {i}");
            let body = seal_body(&mut c, msg.as_bytes());
            assert!(!body.windows(7).any(|w| w == b"request"));
            assert_eq!(unseal_body(&mut s, &body).unwrap(), msg.as_bytes());
            let reply = format!("reply {i}").repeat(100);
            let body = seal_body(&mut s, reply.as_bytes());
            assert_eq!(unseal_body(&mut c, &body).unwrap(), reply.as_bytes());
        }
    }

    #[test]
    fn wrong_password_and_tampering_are_rejected() {
        assert_eq!(
            handshake(false).err(),
            Some(NtlmError::AuthenticationFailed)
        );
        let (mut c, mut s, _) = handshake(true).unwrap();
        let mut body = seal_body(&mut c, b"hello world");
        let n = body.len();
        body[n - 30] ^= 1;
        assert_eq!(unseal_body(&mut s, &body), Err(NtlmError::BadSignature));
    }

    #[test]
    fn framing_has_no_crlf_before_the_closing_boundary() {
        let (mut c, _, _) = handshake(true).unwrap();
        let body = seal_body(&mut c, b"x");
        assert!(body.ends_with(b"--Encrypted Boundary--\r\n"));
        assert!(!body.ends_with(b"\r\n--Encrypted Boundary--\r\n"));
        assert!(is_encrypted_content_type(ENCRYPTED_CONTENT_TYPE));
        assert!(!is_encrypted_content_type("application/soap+xml"));
    }

    #[test]
    fn unsealing_tolerates_a_crlf_before_the_closing_boundary() {
        let (mut c, mut s, _) = handshake(true).unwrap();
        let body = seal_body(&mut c, b"<s:Envelope/>");
        let cut = body.len() - b"--Encrypted Boundary--\r\n".len();
        let mut crlf = body[..cut].to_vec();
        crlf.extend_from_slice(b"\r\n--Encrypted Boundary--\r\n");
        assert_eq!(unseal_body(&mut s, &crlf).unwrap(), b"<s:Envelope/>");
        assert!(matches!(
            unseal_body(&mut s, b"<s:Envelope/>"),
            Err(NtlmError::Framing(_))
        ));
        let mut short = body;
        short.truncate(cut - 3);
        assert!(matches!(
            unseal_body(&mut s, &short),
            Err(NtlmError::Framing(_))
        ));
    }

    #[test]
    fn malformed_tokens_are_errors_not_panics() {
        let mut server = NtlmAcceptor::new("sim");
        assert!(server.challenge(b"NTLMSSP\0").is_err());
        assert!(server.challenge(&[0u8; 3]).is_err());
        let client = NtlmInitiator::new(NtlmCredentials::new("u", "p", ""));
        assert!(client.authenticate(b"garbage").is_err());
        let mut t2 = NtlmAcceptor::new("x")
            .challenge(&NtlmInitiator::new(NtlmCredentials::new("u", "p", "")).negotiate())
            .unwrap();
        t2[40] = 0xff; // target info length beyond the message
        t2[41] = 0xff;
        assert!(client.authenticate(&t2).is_err());
        assert!(server
            .authenticate(b"NTLMSSP\0\x03\0\0\0", |_, _| None)
            .is_err());
        // Not a certificate: still a binding value (SHA-256 fallback), no panic.
        assert_eq!(tls_channel_bindings(b"\x30\x84\xff").len(), 16);
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = NtlmCredentials::new("u", "hunter2", "d");
        assert!(!format!("{c:?}").contains("hunter2"));
        let (s, _, _) = handshake(true).unwrap();
        assert!(!format!("{s:?}").contains("sign"));
    }
}
