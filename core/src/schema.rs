//! Form schemas: the single source of truth for what a request may contain.
//!
//! Each component (VM, disk, NIC, guest initialization) has a YAML schema in `schemas/`, and the
//! managed deployment composes them with `include:`. The texts are embedded with `include_str!`,
//! so this module does no I/O; operators may pass their own texts to [`Forms::from_texts`].
//!
//! Loading is two steps, as STYLE.md §7 asks: the YAML is deserialized into [`FormSpec`] (serde,
//! `deny_unknown_fields`), then [`Forms`] resolves includes and checks every cross-reference
//! (parameter sets, `one_of` groups, patterns, defaults) into a [`FormSchema`], the flat resolved
//! form that [`crate::validate::validate`], the chat modals and the docs are built from. Every
//! problem is a typed [`SchemaError`]. Adding an optional field is a schema edit, never a Rust one.
//!
//! Composition: a form's fields are its includes' fields (in `include:` order, minus each
//! include's `omit:` list) followed by its own. A field id may come from one place only, so a
//! field two components share (`storage_class`, `os_family`) is omitted from all but one
//! include. Parameter sets and `one_of` groups come along with their members.

mod markdown;
mod registry;

pub use markdown::{render_document, render_markdown};
pub use registry::{Forms, BUILTIN_TEXTS};

use crate::osfamily::OsFamily;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The form that validates the spec of a job kind, for the kinds that have one
/// (`deployment.managed` → `managed-deployment`, `vm.create` → `vm`, `disk.create` → `disk`,
/// `nic.create` → `nic`, `vm.initialize` → `guest`).
pub fn form_id_for(kind: crate::contract::job::JobKind) -> Option<&'static str> {
    use crate::contract::job::JobKind;
    match kind {
        JobKind::DeploymentManaged => Some("managed-deployment"),
        JobKind::VmCreate => Some("vm"),
        JobKind::DiskCreate => Some("disk"),
        JobKind::NicCreate => Some("nic"),
        JobKind::VmInitialize => Some("guest"),
        _ => None,
    }
}

/// One form schema exactly as written in YAML (before includes are resolved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormSpec {
    /// Stable id (`vm`, `disk`, `nic`, `guest`, `managed-deployment`).
    pub id: String,
    /// Schema version; bump on any incompatible change.
    pub version: u32,
    /// Human title, shown as the modal title and the docs heading.
    pub title: String,
    /// Longer description for the docs.
    #[serde(default)]
    pub description: String,
    /// Other forms whose fields and rules this one takes over, in order.
    #[serde(default)]
    pub include: Vec<Include>,
    /// This form's own fields, after the included ones.
    #[serde(default)]
    pub fields: Vec<Field>,
    /// All-or-none groups that fields refer to by id.
    #[serde(default)]
    pub parameter_sets: Vec<ParameterSet>,
    /// Groups of which at most (or exactly, when `required`) one member may be set.
    #[serde(default)]
    pub one_of: Vec<OneOf>,
    /// The field whose value becomes the guest host name, checked against the OS family's
    /// host-name rules (Windows computer names are at most 15 characters).
    #[serde(default)]
    pub guest_host_name: Option<String>,
}

/// A reference to another form from `include:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Include {
    /// The included form's id.
    pub form: String,
    /// Fields of the included form not asked here (e.g. `vm_id`, which a managed deployment
    /// takes from its first step).
    #[serde(default)]
    pub omit: Vec<String>,
}

/// One field of a form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Request key (the "Current field" names of the reference, e.g. `guest_v4_ip_addr`).
    pub id: String,
    /// Short label for modals and error messages.
    pub label: String,
    /// Help text shown under the input and in the docs.
    #[serde(default)]
    pub help: String,
    /// Value type.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// Whether a value is needed (a `default` satisfies it).
    #[serde(default)]
    pub required: bool,
    /// Value used when none is given.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// Smallest allowed value (integers).
    #[serde(default)]
    pub min: Option<i64>,
    /// Largest allowed value (integers).
    #[serde(default)]
    pub max: Option<i64>,
    /// Longest allowed text, in characters, after trimming.
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Regular expression the whole trimmed text must match.
    #[serde(default)]
    pub pattern: Option<String>,
    /// What the pattern means, for error messages ("a UUID like 0f8fad5b-…").
    #[serde(default)]
    pub pattern_help: Option<String>,
    /// Allowed values of an `enum` field (matched case-insensitively, stored as written here).
    #[serde(default)]
    pub choices: Vec<String>,
    /// OS families the field applies to; empty means all. Setting it for another family is an
    /// error.
    #[serde(default)]
    pub os_family: Vec<OsFamily>,
    /// Redact the value everywhere it is shown (implied by `type: secret`).
    #[serde(default)]
    pub secret: bool,
    /// The value becomes part of a file path on the host (a VM's folder, a disk's file): it
    /// must be a plain Hyper-V name ([`crate::validate::resource_name`]).
    #[serde(default)]
    pub path_name: bool,
    /// Membership in an all-or-none parameter set.
    #[serde(default)]
    pub parameter_set: Option<SetMembership>,
}

impl Field {
    /// Whether the field's value must be redacted.
    pub fn is_secret(&self) -> bool {
        self.secret || self.kind == FieldType::Secret
    }

    /// Whether the field applies to guests of `family`.
    pub fn applies_to(&self, family: OsFamily) -> bool {
        self.os_family.is_empty() || self.os_family.contains(&family)
    }
}

/// The type of a field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FieldType {
    /// Single-line text, trimmed.
    String,
    /// Whole number (JSON number or decimal text).
    Integer,
    /// true/false/yes/no/on/off/1/0.
    Boolean,
    /// Dotted-quad IPv4 address.
    Ipv4,
    /// RFC 1123 host or domain name.
    Hostname,
    /// Text that is redacted wherever it is shown.
    Secret,
    /// Multi-line text (line endings normalised to `\n`).
    Multiline,
    /// One of the field's `choices`.
    Enum,
    /// A Hyper-V host from inventory.
    Host,
    /// A failover cluster from inventory.
    Cluster,
    /// A network (virtual switch + VLAN) from inventory.
    Network,
    /// A storage class from inventory.
    StorageClass,
    /// A disk image from the image catalogue.
    Image,
}

impl FieldType {
    /// The schema spelling (`storage_class`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Integer => "integer",
            FieldType::Boolean => "boolean",
            FieldType::Ipv4 => "ipv4",
            FieldType::Hostname => "hostname",
            FieldType::Secret => "secret",
            FieldType::Multiline => "multiline",
            FieldType::Enum => "enum",
            FieldType::Host => "host",
            FieldType::Cluster => "cluster",
            FieldType::Network => "network",
            FieldType::StorageClass => "storage_class",
            FieldType::Image => "image",
        }
    }

    /// Whether the value is text (everything but integers and booleans).
    pub fn is_text(self) -> bool {
        !matches!(self, FieldType::Integer | FieldType::Boolean)
    }

    /// Whether the choices come from live inventory (hosts, clusters, networks, …).
    pub fn is_inventory(self) -> bool {
        matches!(
            self,
            FieldType::Host
                | FieldType::Cluster
                | FieldType::Network
                | FieldType::StorageClass
                | FieldType::Image
        )
    }
}

/// A field's membership in a parameter set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetMembership {
    /// The set's id (declared under `parameter_sets:`).
    pub id: String,
    /// Whether the member is needed once the set is in use.
    #[serde(default)]
    pub role: SetRole,
}

/// The role of a parameter-set member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetRole {
    /// All required members are given together, or none is.
    #[default]
    Required,
    /// Allowed only when the set's required members are given.
    Optional,
}

/// An all-or-none group of fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterSet {
    /// Id that fields refer to.
    pub id: String,
    /// Label for messages and the docs ("Domain join").
    pub label: String,
    /// Help text for the docs.
    #[serde(default)]
    pub help: String,
}

/// A group of mutually exclusive fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneOf {
    /// Group id.
    pub id: String,
    /// Label for messages and the docs ("Deployment target").
    pub label: String,
    /// The exclusive fields.
    pub members: Vec<String>,
    /// Whether exactly one (rather than at most one) must be set.
    #[serde(default)]
    pub required: bool,
}

/// A resolved form: includes flattened, references checked, patterns compiled.
#[derive(Debug, Clone)]
pub struct FormSchema {
    pub(crate) id: String,
    pub(crate) version: u32,
    pub(crate) title: String,
    pub(crate) description: String,
    pub(crate) fields: Vec<Field>,
    pub(crate) parameter_sets: Vec<ParameterSet>,
    pub(crate) one_of: Vec<OneOf>,
    pub(crate) guest_host_name: Option<String>,
    pub(crate) includes: Vec<String>,
    /// Compiled, anchored patterns by field id.
    pub(crate) patterns: HashMap<String, Regex>,
    /// Defaults, already normalised, by field id.
    pub(crate) defaults: HashMap<String, serde_json::Value>,
}

impl FormSchema {
    /// Parses and resolves a stand-alone form (one without `include:`). Forms that include
    /// others are loaded through [`Forms::from_texts`].
    pub fn from_yaml(text: &str) -> Result<FormSchema, SchemaError> {
        let spec = FormSpec::from_yaml(text)?;
        if let Some(inc) = spec.include.first() {
            return Err(SchemaError::UnknownInclude {
                form: spec.id,
                include: inc.form.clone(),
            });
        }
        registry::resolve_one(&spec, Vec::new(), Vec::new(), Vec::new(), Vec::new())
    }

    /// The form id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The schema version.
    pub fn version(&self) -> u32 {
        self.version
    }
    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }
    /// The description.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// Every field, included ones first, in presentation order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }
    /// The field with this id.
    pub fn field(&self, id: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.id == id)
    }
    /// The parameter sets in use.
    pub fn parameter_sets(&self) -> &[ParameterSet] {
        &self.parameter_sets
    }
    /// The exclusive groups.
    pub fn one_of(&self) -> &[OneOf] {
        &self.one_of
    }
    /// The field that becomes the guest host name, if the form initializes a guest.
    pub fn guest_host_name(&self) -> Option<&str> {
        self.guest_host_name.as_deref()
    }
    /// Ids of the forms this one was composed from.
    pub fn includes(&self) -> &[String] {
        &self.includes
    }
    /// Members of a parameter set, in field order.
    pub fn set_members(&self, set: &str) -> impl Iterator<Item = &Field> + '_ {
        let set = set.to_owned();
        self.fields
            .iter()
            .filter(move |f| f.parameter_set.as_ref().is_some_and(|m| m.id == set))
    }
    /// Ids of the secret fields.
    pub fn secret_fields(&self) -> impl Iterator<Item = &str> + '_ {
        self.fields
            .iter()
            .filter(|f| f.is_secret())
            .map(|f| f.id.as_str())
    }
    /// The normalised default of a field.
    pub fn default_of(&self, id: &str) -> Option<&serde_json::Value> {
        self.defaults.get(id)
    }
    pub(crate) fn pattern_of(&self, id: &str) -> Option<&Regex> {
        self.patterns.get(id)
    }
}

impl FormSpec {
    /// Deserializes one schema text.
    pub fn from_yaml(text: &str) -> Result<FormSpec, SchemaError> {
        serde_saphyr::from_str(text).map_err(|e| SchemaError::Yaml(Box::new(e)))
    }
}

/// Why a form schema could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The text is not valid YAML for a form schema.
    #[error("invalid form schema")]
    Yaml(#[source] Box<serde_saphyr::Error>),
    /// Two forms have the same id.
    #[error("form `{form}` is defined twice")]
    DuplicateForm {
        /// Form id.
        form: String,
    },
    /// A field id appears twice in one (resolved) form.
    #[error("form `{form}` has field `{field}` twice")]
    DuplicateField {
        /// Form id.
        form: String,
        /// Field id.
        field: String,
    },
    /// `include:` names a form that does not exist.
    #[error("form `{form}` includes unknown form `{include}`")]
    UnknownInclude {
        /// Form id.
        form: String,
        /// The missing form.
        include: String,
    },
    /// Forms include each other in a cycle.
    #[error("form `{form}` includes itself through its includes")]
    IncludeCycle {
        /// Form id.
        form: String,
    },
    /// `omit:` names a field the included form does not have.
    #[error("form `{form}` omits `{field}` which form `{include}` does not have")]
    UnknownOmit {
        /// Form id.
        form: String,
        /// The included form.
        include: String,
        /// The omitted field.
        field: String,
    },
    /// A field refers to an undeclared parameter set.
    #[error("field `{field}` of form `{form}` is in undeclared parameter set `{set}`")]
    UnknownParameterSet {
        /// Form id.
        form: String,
        /// Field id.
        field: String,
        /// Set id.
        set: String,
    },
    /// A parameter set has no required member.
    #[error("parameter set `{set}` of form `{form}` has no required member")]
    EmptyParameterSet {
        /// Form id.
        form: String,
        /// Set id.
        set: String,
    },
    /// A `one_of` group or `guest_host_name` names a field the form does not have.
    #[error("form `{form}` refers to unknown field `{field}` in `{place}`")]
    UnknownField {
        /// Form id.
        form: String,
        /// Where the reference is (`one_of target`, `guest_host_name`).
        place: String,
        /// The unknown field.
        field: String,
    },
    /// A pattern is not a valid regular expression.
    #[error("field `{field}` of form `{form}` has an invalid pattern")]
    BadPattern {
        /// Form id.
        form: String,
        /// Field id.
        field: String,
        /// The regex error.
        #[source]
        source: regex::Error,
    },
    /// An attribute does not fit the field's type (e.g. `min` on a string, `enum` without choices).
    #[error("field `{field}` of form `{form}`: {problem}")]
    BadAttribute {
        /// Form id.
        form: String,
        /// Field id.
        field: String,
        /// What is wrong, in lowercase words.
        problem: String,
    },
    /// A default value does not pass the field's own validation.
    #[error("field `{field}` of form `{form}` has an invalid default: {problem}")]
    BadDefault {
        /// Form id.
        form: String,
        /// Field id.
        field: String,
        /// The validation message.
        problem: String,
    },
}
