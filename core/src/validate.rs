//! Request validation against a resolved [`FormSchema`].
//!
//! [`validate`] turns a raw JSON object into a [`ValidatedRequest`] (typed, trimmed, defaults
//! applied, OS family derived) or into **every** problem at once as [`FieldError`] data. Each
//! error names exactly one field, so a modal can show it inline; a field gets at most one error.
//!
//! Rules, in the order they claim a field:
//! 1. unknown keys → `unknown_field`;
//! 2. a set value whose field does not apply to the OS family → `not_applicable`;
//! 3. per-field checks (type, range, length, pattern, IPv4, host name, choices);
//! 4. parameter sets: once any required member is given, each missing required member gets
//!    `parameter_set_incomplete`; an optional member (e.g. `guest_v4_dns2`) given without the
//!    set's required members also gets `parameter_set_incomplete`, on that optional field.
//!    A set with a member that does not apply to the OS family is not checked (its given members
//!    already carry `not_applicable`);
//! 5. `one_of` groups: two or more given → `exclusive` on each; none given and the group is
//!    required → `required` on each member;
//! 6. required fields without a value or a default → `required`;
//! 7. the guest host name (the form's `guest_host_name` field) must suit the OS family →
//!    `invalid_hostname`.
//!
//! "Given" means present, not null and not blank: whitespace-only text counts as missing.
//! The OS family is: the form's `os_family` field when given, else the image (first `image`
//! field) looked up in the catalogue, else inferred from the image name
//! ([`crate::osfamily::infer_from_image_name`]), else Windows.

mod coerce;
mod context;
pub mod hostname;
pub mod resource_name;

pub use context::{ImageCatalogue, ImageEntry, InventoryChoices, InventoryFile, ValidationContext};

use crate::osfamily::{infer_from_image_name, OsFamily};
use crate::redact::REDACTED;
use crate::schema::{Field, FieldType, FormSchema, SetRole};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt;

/// The id of the optional field that states the OS family explicitly.
pub const OS_FAMILY_FIELD: &str = "os_family";

/// A stable, machine-readable reason for a [`FieldError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// A required field (or one of a required `one_of` group) is missing or blank.
    Required,
    /// A number is outside the field's `min`..`max`.
    OutOfRange,
    /// Text is longer than the field's `max_length`.
    TooLong,
    /// Text does not match the field's `pattern`.
    Pattern,
    /// Not a dotted-quad IPv4 address.
    InvalidIpv4,
    /// Not a valid host name (RFC 1123, or the OS family's guest host-name rules).
    InvalidHostname,
    /// A parameter set is partly given: this member is missing, or this optional member needs
    /// the set's required members.
    ParameterSetIncomplete,
    /// The field does not apply to the request's OS family.
    NotApplicable,
    /// The form has no such field.
    UnknownField,
    /// More than one field of an exclusive group is given.
    Exclusive,
    /// The value has the wrong type (text for a number, a list for text, …).
    InvalidType,
    /// The value is not one of the field's choices (enum) or not in the given inventory.
    UnknownChoice,
    /// The target host's last inventory poll did not answer (the bot's gate).
    HostUnreachable,
    /// The VM name is taken on the target host, or claimed by another open request (the
    /// bot's gate).
    NameInUse,
    /// The VM (or its disk) the operation needs is not on the target host (the bot's gate).
    NotFound,
    /// The new disk size is smaller than the disk (disks only grow; the bot's gate).
    DiskShrink,
    /// The memory does not fit the target host (the bot's gate).
    InsufficientMemory,
}

impl ErrorCode {
    /// The wire spelling (`out_of_range`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Required => "required",
            ErrorCode::OutOfRange => "out_of_range",
            ErrorCode::TooLong => "too_long",
            ErrorCode::Pattern => "pattern",
            ErrorCode::InvalidIpv4 => "invalid_ipv4",
            ErrorCode::InvalidHostname => "invalid_hostname",
            ErrorCode::ParameterSetIncomplete => "parameter_set_incomplete",
            ErrorCode::NotApplicable => "not_applicable",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::Exclusive => "exclusive",
            ErrorCode::InvalidType => "invalid_type",
            ErrorCode::UnknownChoice => "unknown_choice",
            ErrorCode::HostUnreachable => "host_unreachable",
            ErrorCode::NameInUse => "name_in_use",
            ErrorCode::NotFound => "not_found",
            ErrorCode::DiskShrink => "disk_shrink",
            ErrorCode::InsufficientMemory => "insufficient_memory",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validation problem, serialised as exactly `{"field","code","message"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FieldError {
    /// The field id (empty when the request as a whole is not an object).
    pub field: String,
    /// Stable reason code.
    pub code: ErrorCode,
    /// A sentence for people.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A request that passed validation: normalised values plus what was derived.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidatedRequest {
    form: String,
    version: u32,
    os_family: OsFamily,
    values: Map<String, Value>,
    secret_fields: BTreeSet<String>,
}

impl ValidatedRequest {
    /// The form id it was validated against.
    pub fn form_id(&self) -> &str {
        &self.form
    }
    /// That form's schema version.
    pub fn form_version(&self) -> u32 {
        self.version
    }
    /// The derived OS family of the guest.
    pub fn os_family(&self) -> OsFamily {
        self.os_family
    }
    /// The normalised values: integers as numbers, booleans as bools, trimmed text, defaults
    /// applied. Fields that were not given and have no default are absent.
    pub fn values(&self) -> &Map<String, Value> {
        &self.values
    }
    /// One value.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.values.get(field)
    }
    /// One text value.
    pub fn str(&self, field: &str) -> Option<&str> {
        self.values.get(field).and_then(Value::as_str)
    }
    /// The ids of the form's secret fields.
    pub fn secret_fields(&self) -> &BTreeSet<String> {
        &self.secret_fields
    }
    /// The values with every secret replaced by [`REDACTED`], safe to show or log.
    pub fn redacted(&self) -> Map<String, Value> {
        let mut out = self.values.clone();
        for key in &self.secret_fields {
            if let Some(v) = out.get_mut(key) {
                *v = Value::String(REDACTED.to_owned());
            }
        }
        out
    }
    /// The values, consuming the request.
    pub fn into_values(self) -> Map<String, Value> {
        self.values
    }
}

/// Validates `input` against `form`. See the module docs for the rules; every error is returned.
///
/// ```
/// use aetherv_core::schema::Forms;
/// use aetherv_core::validate::{validate, ErrorCode, ValidationContext};
///
/// let forms = Forms::builtin()?;
/// let form = forms.get("vm").ok_or("no vm form")?;
/// let ok = validate(form, &serde_json::json!({"vm_name": " web-01 ", "target_host": "hv01"}),
///     &ValidationContext::default());
/// assert_eq!(ok.map(|r| r.values()["gb_ram"].clone()), Ok(serde_json::json!(4)));
///
/// let errors = validate(form, &serde_json::json!({"vm_name": "web-01", "cpu_cores": 0}),
///     &ValidationContext::default()).err().unwrap_or_default();
/// let codes: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
/// assert_eq!(codes, [
///     ("cpu_cores", ErrorCode::OutOfRange),
///     ("target_host", ErrorCode::Required),
///     ("target_cluster", ErrorCode::Required),
/// ]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn validate(
    form: &FormSchema,
    input: &Value,
    ctx: &ValidationContext,
) -> Result<ValidatedRequest, Vec<FieldError>> {
    let Some(obj) = input.as_object() else {
        return Err(vec![FieldError {
            field: String::new(),
            code: ErrorCode::InvalidType,
            message: "the request must be a mapping of field names to values".to_owned(),
        }]);
    };
    let mut run = Run::new(form);
    for (i, f) in form.fields().iter().enumerate() {
        let raw = obj.get(&f.id);
        if !coerce::is_provided(raw) {
            continue;
        }
        run.given[i] = true;
        if let Some(raw) = raw {
            match coerce::coerce(f, form.pattern_of(&f.id), raw, Some(ctx)) {
                Ok(v) => run.values[i] = Some(v),
                Err(e) => run.errors[i] = Some(e),
            }
        }
    }
    let family = derive_os_family(form, &run, obj, ctx);
    run.check_applicability(family);
    run.check_parameter_sets(family);
    run.check_one_of();
    run.apply_defaults_and_required(family);
    run.check_guest_host_name(family);
    if let Some(i) = run.index(OS_FAMILY_FIELD) {
        if run.errors[i].is_none() {
            run.values[i] = Some(Value::String(family.as_str().to_owned()));
        }
    }

    let unknown = obj
        .keys()
        .filter(|k| form.field(k).is_none())
        .map(|k| FieldError {
            field: k.clone(),
            code: ErrorCode::UnknownField,
            message: format!("{k} is not a field of the {} form", form.title()),
        });
    let errors: Vec<FieldError> = run.errors.into_iter().flatten().chain(unknown).collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let values = form
        .fields()
        .iter()
        .zip(run.values)
        .filter_map(|(f, v)| v.map(|v| (f.id.clone(), v)))
        .collect();
    Ok(ValidatedRequest {
        form: form.id().to_owned(),
        version: form.version(),
        os_family: family,
        values,
        secret_fields: form.secret_fields().map(str::to_owned).collect(),
    })
}

/// Checks one field on its own (type, range, pattern, choices), for inline feedback while a
/// form is being filled. `Ok(None)` means not given. Cross-field rules need [`validate`].
pub fn check_field(
    form: &FormSchema,
    field: &str,
    raw: &Value,
    ctx: &ValidationContext,
) -> Result<Option<Value>, FieldError> {
    let Some(f) = form.field(field) else {
        return Err(FieldError {
            field: field.to_owned(),
            code: ErrorCode::UnknownField,
            message: format!("{field} is not a field of the {} form", form.title()),
        });
    };
    if !coerce::is_provided(Some(raw)) {
        return Ok(None);
    }
    coerce::coerce(f, form.pattern_of(field), raw, Some(ctx)).map(Some)
}

/// Checks and normalises a schema default (used when a schema is loaded).
pub(crate) fn normalize_default(
    field: &Field,
    pattern: Option<&regex::Regex>,
    value: &Value,
) -> Result<Value, String> {
    if !coerce::is_provided(Some(value)) {
        return Err("the default is blank".to_owned());
    }
    coerce::coerce(field, pattern, value, None).map_err(|e| e.message)
}

/// The OS family of the request (module docs give the order).
fn derive_os_family(
    form: &FormSchema,
    run: &Run<'_>,
    obj: &Map<String, Value>,
    ctx: &ValidationContext,
) -> OsFamily {
    if let Some(i) = run.index(OS_FAMILY_FIELD) {
        if let Some(family) = run.values[i]
            .as_ref()
            .and_then(Value::as_str)
            .and_then(OsFamily::parse)
        {
            return family;
        }
    }
    let Some(image_field) = form.fields().iter().find(|f| f.kind == FieldType::Image) else {
        return OsFamily::Windows;
    };
    // An image outside the inventory still names its family; use the raw text then.
    let image = obj
        .get(&image_field.id)
        .and_then(Value::as_str)
        .map(str::trim);
    match image {
        Some(name) if !name.is_empty() => ctx
            .images
            .lookup(name)
            .map_or_else(|| infer_from_image_name(name), |e| e.os_family),
        _ => OsFamily::Windows,
    }
}

/// Per-field state of one validation run, indexed like `form.fields()`.
struct Run<'a> {
    form: &'a FormSchema,
    given: Vec<bool>,
    values: Vec<Option<Value>>,
    errors: Vec<Option<FieldError>>,
}

impl<'a> Run<'a> {
    fn new(form: &'a FormSchema) -> Self {
        let n = form.fields().len();
        Run {
            form,
            given: vec![false; n],
            values: vec![None; n],
            errors: vec![None; n],
        }
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.form.fields().iter().position(|f| f.id == id)
    }

    fn field(&self, i: usize) -> &'a Field {
        &self.form.fields()[i]
    }

    /// Records an error unless the field already has one (the first rule to claim it wins).
    fn fail(&mut self, i: usize, code: ErrorCode, message: String) {
        if self.errors[i].is_none() {
            self.errors[i] = Some(FieldError {
                field: self.field(i).id.clone(),
                code,
                message,
            });
            self.values[i] = None;
        }
    }

    fn check_applicability(&mut self, family: OsFamily) {
        for i in 0..self.given.len() {
            let f = self.field(i);
            if self.given[i] && !f.applies_to(family) {
                let only: Vec<&str> = f.os_family.iter().map(|o| o.as_str()).collect();
                let message = format!(
                    "{} ({}) applies to {} guests only, and this request is for a {family} guest",
                    f.label,
                    f.id,
                    only.join("/")
                );
                // Applicability outranks any value problem: the field must not be set at all.
                self.errors[i] = None;
                self.fail(i, ErrorCode::NotApplicable, message);
            }
        }
    }

    fn check_parameter_sets(&mut self, family: OsFamily) {
        for set in self.form.parameter_sets() {
            let members: Vec<usize> = (0..self.given.len())
                .filter(|&i| {
                    self.field(i)
                        .parameter_set
                        .as_ref()
                        .is_some_and(|m| m.id == set.id)
                })
                .collect();
            if members.iter().any(|&i| !self.field(i).applies_to(family)) {
                continue;
            }
            let fields = self.form.fields();
            let role = |i: usize| {
                fields[i]
                    .parameter_set
                    .as_ref()
                    .map_or(SetRole::Required, |m| m.role)
            };
            let required: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&i| role(i) == SetRole::Required)
                .collect();
            let names: Vec<&str> = required
                .iter()
                .map(|&i| self.field(i).id.as_str())
                .collect();
            let names = names.join(", ");
            let any_required_given = required.iter().any(|&i| self.given[i]);
            for &i in &members {
                let f = self.field(i);
                if any_required_given && role(i) == SetRole::Required && !self.given[i] {
                    let message = format!(
                        "{} ({}) is missing: {} needs all of {names}, or none of them",
                        f.label, f.id, set.label
                    );
                    self.fail(i, ErrorCode::ParameterSetIncomplete, message);
                } else if !any_required_given && role(i) == SetRole::Optional && self.given[i] {
                    let message = format!(
                        "{} ({}) can only be given together with {} ({names})",
                        f.label, f.id, set.label
                    );
                    self.fail(i, ErrorCode::ParameterSetIncomplete, message);
                }
            }
        }
    }

    fn check_one_of(&mut self) {
        for group in self.form.one_of() {
            let members: Vec<usize> = group.members.iter().filter_map(|m| self.index(m)).collect();
            let given: Vec<usize> = members.iter().copied().filter(|&i| self.given[i]).collect();
            let names = group.members.join(" or ");
            if given.len() > 1 {
                for i in given {
                    let message = format!(
                        "{} ({}) cannot be combined with the others: give only one of {names}",
                        self.field(i).label,
                        self.field(i).id
                    );
                    self.fail(i, ErrorCode::Exclusive, message);
                }
            } else if given.is_empty() && group.required {
                for i in members {
                    self.fail(
                        i,
                        ErrorCode::Required,
                        format!("exactly one of {names} is required"),
                    );
                }
            }
        }
    }

    fn apply_defaults_and_required(&mut self, family: OsFamily) {
        for i in 0..self.given.len() {
            if self.given[i] {
                continue;
            }
            let f = self.field(i);
            if let Some(d) = self.form.default_of(&f.id) {
                if f.applies_to(family) {
                    self.values[i] = Some(d.clone());
                }
            } else if f.required {
                let message = format!("{} ({}) is required", f.label, f.id);
                self.fail(i, ErrorCode::Required, message);
            }
        }
    }

    fn check_guest_host_name(&mut self, family: OsFamily) {
        let Some(i) = self.form.guest_host_name().and_then(|h| self.index(h)) else {
            return;
        };
        let Some(name) = self.values[i].as_ref().and_then(Value::as_str) else {
            return;
        };
        if let Some(problem) = hostname::guest_host_name_problem(name, family) {
            let message = format!(
                "{} {name:?} is also the guest host name, and {problem}",
                self.field(i).label
            );
            self.fail(i, ErrorCode::InvalidHostname, message);
        }
    }
}
