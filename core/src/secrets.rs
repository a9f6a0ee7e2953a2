//! Job secrets sealed for the workers: the secret form fields of a request (passwords, SSH
//! keys) travel in the job envelope's `secrets` field as an ASCII-armored age file encrypted to
//! the workers' X25519 recipients (`age1…`). Producers (the bot, `aetherv submit`) hold only
//! recipients; only workers hold the identity (`AGE-SECRET-KEY-1…`).
//!
//! The plaintext is a JSON object (field id → value). [`split_secrets`] moves the secret fields
//! out of a spec before [`seal`]; a worker [`open`]s the field and merges the values into its
//! working copy of the spec; [`crate::JobEnvelope::seal_secrets`] and
//! [`crate::JobEnvelope::open_secrets`] do both for an envelope, with the secret fields of
//! [`crate::ops::secret_fields`]. Plaintext buffers are zeroized after use; key material never
//! appears in error messages.

use serde_json::{Map, Value};
use std::io::{Read as _, Write as _};
use zeroize::Zeroizing;

pub use age::x25519::{Identity, Recipient};

/// The prefix of an age X25519 recipient.
pub const RECIPIENT_PREFIX: &str = "age1";
/// The prefix of an age X25519 identity.
pub const IDENTITY_PREFIX: &str = "AGE-SECRET-KEY-1";

/// Why secrets could not be sealed, opened or keys parsed. Messages never hold key material or
/// secret values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// Sealing needs at least one recipient.
    #[error("no age recipient is configured")]
    NoRecipients,
    /// A recipient is not an `age1…` X25519 public key.
    #[error("invalid age recipient {text:?}: {reason}")]
    InvalidRecipient {
        /// The text given (public, safe to show).
        text: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The identity text holds no `AGE-SECRET-KEY-1…` line.
    #[error("no age identity (AGE-SECRET-KEY-1…) found")]
    NoIdentity,
    /// The identity line is not a valid X25519 identity (the text is not repeated).
    #[error("invalid age identity: {0}")]
    InvalidIdentity(&'static str),
    /// Encryption failed.
    #[error("age encryption failed: {0}")]
    Seal(String),
    /// The ciphertext is malformed or not encrypted to this identity.
    #[error("the secrets cannot be decrypted with this worker's identity")]
    Open,
    /// The plaintext is not a JSON object.
    #[error("the decrypted secrets are not a JSON object")]
    Malformed,
}

/// Encrypts `secret_values` (a JSON object) to every recipient; returns the ASCII-armored age
/// file.
pub fn seal(
    secret_values: &Map<String, Value>,
    recipients: &[Recipient],
) -> Result<String, SecretsError> {
    if recipients.is_empty() {
        return Err(SecretsError::NoRecipients);
    }
    let plaintext = Zeroizing::new(
        serde_json::to_vec(secret_values).map_err(|e| SecretsError::Seal(e.to_string()))?,
    );
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| SecretsError::Seal(e.to_string()))?;
    let mut out = Vec::with_capacity(plaintext.len() * 2 + 256);
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| SecretsError::Seal(e.to_string()))?;
    let mut writer = encryptor
        .wrap_output(armor)
        .map_err(|e| SecretsError::Seal(e.to_string()))?;
    writer
        .write_all(&plaintext)
        .map_err(|e| SecretsError::Seal(e.to_string()))?;
    writer
        .finish()
        .and_then(age::armor::ArmoredWriter::finish)
        .map_err(|e| SecretsError::Seal(e.to_string()))?;
    String::from_utf8(out).map_err(|e| SecretsError::Seal(e.to_string()))
}

/// Decrypts an armored age file with `identity` and parses the JSON object inside.
pub fn open(armored: &str, identity: &Identity) -> Result<Map<String, Value>, SecretsError> {
    let reader = age::armor::ArmoredReader::new(armored.as_bytes());
    let decryptor = age::Decryptor::new_buffered(reader).map_err(|_| SecretsError::Open)?;
    let mut stream = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|_| SecretsError::Open)?;
    let mut plaintext = Zeroizing::new(Vec::new());
    stream
        .read_to_end(&mut plaintext)
        .map_err(|_| SecretsError::Open)?;
    match serde_json::from_slice::<Value>(&plaintext) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(SecretsError::Malformed),
    }
}

/// Moves the secret fields out of `spec` and seals them to `recipients`. Returns `None` when
/// `spec` holds no secret value (then no recipient is needed).
pub fn seal_spec<'a>(
    spec: &mut Map<String, Value>,
    secret_ids: impl IntoIterator<Item = &'a str>,
    recipients: &[Recipient],
) -> Result<Option<String>, SecretsError> {
    let values = SecretValues(split_secrets(spec, secret_ids));
    if values.0.is_empty() {
        return Ok(None);
    }
    seal(&values.0, recipients).map(Some)
}

/// Opened secret values (field id → value); the strings are zeroized when dropped.
#[derive(Default)]
pub struct SecretValues(pub Map<String, Value>);

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Drop for SecretValues {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        for v in self.0.values_mut() {
            if let Value::String(s) = v {
                s.zeroize();
            }
        }
    }
}

/// Moves the fields named in `secret_ids` out of `spec` and returns them (null values are
/// dropped, not returned).
pub fn split_secrets<'a>(
    spec: &mut Map<String, Value>,
    secret_ids: impl IntoIterator<Item = &'a str>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for id in secret_ids {
        match spec.remove(id) {
            Some(Value::Null) | None => {}
            Some(v) => {
                out.insert(id.to_string(), v);
            }
        }
    }
    out
}

/// The fields named in `secret_ids` that `spec` holds with a non-null value, sorted.
pub fn plaintext_secret_fields<'a>(
    spec: &Map<String, Value>,
    secret_ids: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let mut found: Vec<String> = secret_ids
        .into_iter()
        .filter(|id| spec.get(*id).is_some_and(|v| !v.is_null()))
        .map(str::to_string)
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Parses one `age1…` recipient.
pub fn parse_recipient(text: &str) -> Result<Recipient, SecretsError> {
    let text = text.trim();
    if !text.starts_with(RECIPIENT_PREFIX) {
        return Err(SecretsError::InvalidRecipient {
            text: text.to_string(),
            reason: "not an age X25519 recipient (age1…)",
        });
    }
    text.parse::<Recipient>()
        .map_err(|reason| SecretsError::InvalidRecipient {
            text: text.to_string(),
            reason,
        })
}

/// Parses a list of recipients separated by commas or white space (empty entries ignored).
pub fn parse_recipients(text: &str) -> Result<Vec<Recipient>, SecretsError> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(parse_recipient)
        .collect()
}

/// Parses an identity: the key itself, or the text of an age identity file (comment lines
/// starting with `#` and blank lines are skipped; the first key line is used).
pub fn parse_identity(text: &str) -> Result<Identity, SecretsError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or(SecretsError::NoIdentity)?;
    if !line.starts_with(IDENTITY_PREFIX) {
        return Err(SecretsError::NoIdentity);
    }
    line.parse::<Identity>()
        .map_err(SecretsError::InvalidIdentity)
}

/// A new random identity (demo and tests; production identities come from `age-keygen`).
pub fn generate_identity() -> Identity {
    Identity::generate()
}

/// The identity as text (`AGE-SECRET-KEY-1…`), zeroized when dropped.
pub fn identity_text(identity: &Identity) -> Zeroizing<String> {
    use age::secrecy::ExposeSecret as _;
    Zeroizing::new(identity.to_string().expose_secret().to_string())
}

/// Why an envelope's secrets could not be sealed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Secrets both sealed already and in the plaintext spec.
    #[error(
        "the job has sealed secrets and also {} in plaintext; put every secret in one place",
        .fields.join(", ")
    )]
    Mixed {
        /// The plaintext secret fields.
        fields: Vec<String>,
    },
    /// Secret values to seal but no recipient.
    #[error("the spec holds secret fields ({}) but no age recipient is configured", .fields.join(", "))]
    NoRecipients {
        /// The plaintext secret fields.
        fields: Vec<String>,
    },
    /// Encryption failed.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

/// Why a worker refuses an envelope's secrets. Messages never hold a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Secret fields in the plaintext spec: the job is not run (and not dead-lettered, which
    /// would keep the plaintext on the broker).
    #[error(
        "secret fields ({}) arrived in plaintext in the job spec; producers must seal them to \
         the workers' age recipients in the envelope's `secrets` field; the job was not run",
        .fields.join(", ")
    )]
    Plaintext {
        /// The plaintext secret fields.
        fields: Vec<String>,
    },
    /// Sealed secrets but no identity to open them.
    #[error(
        "the job carries sealed secrets but this worker has no age identity configured \
         (age_identity_file or AETHERV_AGE_IDENTITY)"
    )]
    NoIdentity,
    /// The ciphertext does not open with this identity (or is malformed).
    #[error(transparent)]
    Undecryptable(SecretsError),
    /// The sealed values hold a field that is not a secret field.
    #[error("the sealed secrets hold {field}, which is not a secret field")]
    NotSecret {
        /// The field.
        field: String,
    },
}

impl OpenError {
    /// The stable code of the `job.failed` event.
    pub fn code(&self) -> &'static str {
        match self {
            OpenError::Plaintext { .. } => "plaintext_secret",
            OpenError::NoIdentity | OpenError::Undecryptable(_) => "secrets_undecryptable",
            OpenError::NotSecret { .. } => "invalid_request",
        }
    }
}

impl crate::JobEnvelope {
    /// The secret fields ([`crate::ops::secret_fields`]) the plaintext spec holds, sorted.
    pub fn plaintext_secret_fields(&self) -> Vec<String> {
        plaintext_secret_fields(&self.spec, crate::ops::secret_fields().iter().copied())
    }

    /// Moves the secret fields of the spec into the sealed `secrets` field. Nothing to seal
    /// needs no recipient; secrets both sealed and in plaintext are refused.
    pub fn seal_secrets(&mut self, recipients: &[Recipient]) -> Result<(), SealError> {
        let fields = self.plaintext_secret_fields();
        if fields.is_empty() {
            return Ok(());
        }
        if self.secrets.is_some() {
            return Err(SealError::Mixed { fields });
        }
        if recipients.is_empty() {
            return Err(SealError::NoRecipients { fields });
        }
        self.secrets = seal_spec(
            &mut self.spec,
            crate::ops::secret_fields().iter().copied(),
            recipients,
        )?;
        Ok(())
    }

    /// Checks and opens the sealed secrets (the envelope is left as it is): plaintext secret
    /// fields in the spec, sealed secrets without an identity or not for it, and sealed fields
    /// that are not secret fields are refused. No sealed secrets: empty values.
    pub fn open_secrets(&self, identity: Option<&Identity>) -> Result<SecretValues, OpenError> {
        let fields = self.plaintext_secret_fields();
        if !fields.is_empty() {
            return Err(OpenError::Plaintext { fields });
        }
        let Some(armored) = &self.secrets else {
            return Ok(SecretValues::default());
        };
        let identity = identity.ok_or(OpenError::NoIdentity)?;
        let values = open(armored, identity)
            .map(SecretValues)
            .map_err(OpenError::Undecryptable)?;
        if let Some(field) = values.0.keys().find(|k| !crate::ops::is_secret(k)) {
            return Err(OpenError::NotSecret {
                field: field.clone(),
            });
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PW: &str = "Sup3r-Secret-Passw0rd!";

    fn values() -> Map<String, Value> {
        json!({"guest_la_pw": PW, "cnf_ansible_ssh_key": "ssh-ed25519 AAAA test"})
            .as_object()
            .cloned()
            .expect("object")
    }

    #[test]
    fn round_trip_for_every_recipient() {
        let a = generate_identity();
        let b = generate_identity();
        let armored = seal(&values(), &[a.to_public(), b.to_public()]).expect("sealed");
        assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert_eq!(open(&armored, &a).expect("a opens"), values());
        assert_eq!(open(&armored, &b).expect("b opens"), values());
    }

    #[test]
    fn the_wrong_identity_fails() {
        let right = generate_identity();
        let armored = seal(&values(), &[right.to_public()]).expect("sealed");
        let e = open(&armored, &generate_identity()).expect_err("wrong identity");
        assert!(matches!(e, SecretsError::Open));
        assert!(matches!(open("not age", &right), Err(SecretsError::Open)));
        assert!(matches!(
            seal(&values(), &[]),
            Err(SecretsError::NoRecipients)
        ));
    }

    #[test]
    fn the_armored_text_does_not_contain_the_plaintext() {
        let id = generate_identity();
        let armored = seal(&values(), &[id.to_public()]).expect("sealed");
        assert!(!armored.contains(PW));
        assert!(!armored.contains("guest_la_pw"));
        assert!(!armored.contains("ssh-ed25519"));
    }

    #[test]
    fn seal_spec_moves_secrets_into_the_ciphertext() {
        let id = generate_identity();
        let mut spec = json!({"vm_name": "a", "guest_la_pw": PW})
            .as_object()
            .cloned()
            .expect("object");
        let sealed = seal_spec(&mut spec, ["guest_la_pw"], &[id.to_public()])
            .expect("sealed")
            .expect("some");
        assert_eq!(Value::Object(spec.clone()), json!({"vm_name": "a"}));
        assert_eq!(open(&sealed, &id).expect("opens"), values_pw_only());
        assert!(seal_spec(&mut spec, ["guest_la_pw"], &[])
            .expect("none")
            .is_none());
        let dbg = format!("{:?}", SecretValues(values()));
        assert!(dbg.contains("guest_la_pw") && !dbg.contains(PW), "{dbg}");
    }

    fn values_pw_only() -> Map<String, Value> {
        json!({"guest_la_pw": PW})
            .as_object()
            .cloned()
            .expect("object")
    }

    #[test]
    fn split_moves_only_secret_fields() {
        let mut spec = json!({"vm_name": "a", "guest_la_pw": PW, "guest_domain_join_pw": null})
            .as_object()
            .cloned()
            .expect("object");
        let ids = ["guest_la_pw", "guest_domain_join_pw", "cnf_ansible_ssh_key"];
        assert_eq!(
            plaintext_secret_fields(&spec, ids),
            vec!["guest_la_pw".to_string()]
        );
        let secrets = split_secrets(&mut spec, ids);
        assert_eq!(Value::Object(secrets), json!({"guest_la_pw": PW}));
        assert_eq!(Value::Object(spec.clone()), json!({"vm_name": "a"}));
        assert!(plaintext_secret_fields(&spec, ids).is_empty());
    }

    #[test]
    fn keys_parse_and_errors_never_echo_identities() {
        let id = generate_identity();
        let text = identity_text(&id);
        assert!(text.starts_with(IDENTITY_PREFIX));
        let file = format!(
            "# created: now\n# public key: {}\n{}\n",
            id.to_public(),
            *text
        );
        let parsed = parse_identity(&file).expect("identity file");
        assert_eq!(parsed.to_public(), id.to_public());
        let recipients =
            parse_recipients(&format!(" {}, {} ", id.to_public(), id.to_public())).expect("list");
        assert_eq!(recipients.len(), 2);
        assert!(parse_recipients("").expect("empty").is_empty());
        assert!(parse_recipient("age1nope").is_err());
        assert!(parse_recipient(&text).is_err());
        // One character changed (to one it is not already): the checksum catches it.
        let last = text.chars().last().unwrap_or('Q');
        let other = if last == 'X' { 'Y' } else { 'X' };
        let broken = format!("{}{other}", &text[..text.len() - 1]);
        let e = parse_identity(&broken).err().expect("bad checksum");
        assert!(!e.to_string().contains(&broken[..20]), "{e}");
        assert!(matches!(
            parse_identity("# only a comment\n"),
            Err(SecretsError::NoIdentity)
        ));
    }
}
