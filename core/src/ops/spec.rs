//! The machinery of [`super`]'s vocabulary: the [`Spec`] trait, its field table, the
//! `specs!` macro that declares a spec struct and its fields at once, and the [`Secret`] value
//! type. The vocabulary itself (which kinds have which fields) is in `ops.rs`.

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One field of a spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The wire name (also the form field id).
    pub name: &'static str,
    /// The form (or the agent) requires it.
    pub required: bool,
    /// A secret: sealed for the workers, redacted in every view, never in events or logs.
    pub secret: bool,
}

/// Why a spec does not read as its typed form.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("the {kind} spec does not match its fields: {detail}")]
pub struct SpecError {
    /// The job kind (or spec type) read.
    pub kind: &'static str,
    /// serde's description; never a secret value (secret fields refuse without echoing).
    pub detail: String,
}

/// A typed spec: a serde struct plus its field table.
pub trait Spec: Serialize + DeserializeOwned + Default + Clone {
    /// The spec accepts any field (`noop` echoes its spec).
    const OPEN: bool = false;

    /// Every field, included parts first, in declaration order.
    fn fields() -> &'static [Field];

    /// The spec as the map a job envelope or an agent request carries (absent fields omitted).
    fn into_spec(self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }

    /// Reads a spec map; unknown fields are ignored.
    fn from_spec(spec: &Map<String, Value>) -> Result<Self, SpecError> {
        serde_json::from_value(Value::Object(spec.clone())).map_err(|e| SpecError {
            kind: std::any::type_name::<Self>()
                .rsplit("::")
                .next()
                .unwrap_or("job"),
            detail: e.to_string(),
        })
    }
}

macro_rules! flag {
    (required required) => {
        true
    };
    (secret secret) => {
        true
    };
    (required secret) => {
        false
    };
    (secret required) => {
        false
    };
}

/// Declares specs: `..part: Part;` lines flatten another spec in, then
/// `field: Type [required, secret],` (every field is `Option<Type>` on the struct).
macro_rules! specs {
    ($(
        $(#[$meta:meta])*
        pub struct $Name:ident {
            $( .. $part:ident : $Part:ty; )*
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty $([$($flag:ident),+])? ),* $(,)?
        }
    )+) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct $Name {
            $(
                #[doc = concat!("The [`", stringify!($Part), "`] fields.")]
                #[serde(flatten)]
                pub $part: $Part,
            )*
            $(
                $(#[$fmeta])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }

        impl $crate::ops::Spec for $Name {
            fn fields() -> &'static [$crate::ops::Field] {
                static FIELDS: std::sync::OnceLock<Vec<Field>> = std::sync::OnceLock::new();
                FIELDS.get_or_init(|| {
                    let parts: Vec<&'static [Field]> = vec![$(<$Part as Spec>::fields()),*];
                    let own: Vec<Field> = vec![$(
                        Field {
                            name: stringify!($field),
                            required: false $($(|| flag!(required $flag))+)?,
                            secret: false $($(|| flag!(secret $flag))+)?,
                        }
                    ),*];
                    parts.into_iter().flatten().copied().chain(own).collect()
                })
            }
        }
    )+};
}

/// A secret text value: serialized as the plain string (it only ever travels sealed), shown
/// redacted by `Debug`, zeroized on drop. Deserializing a non-string fails without echoing it.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The plaintext.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", crate::redact::REDACTED)
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.0.zeroize();
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Secret(s)),
            _ => Err(serde::de::Error::custom("a secret field must be a string")),
        }
    }
}
