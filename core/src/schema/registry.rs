//! The form registry: loads schema texts, resolves `include:` and checks every reference.

use super::{Field, FieldType, FormSchema, FormSpec, OneOf, ParameterSet, SchemaError, SetRole};
use regex::Regex;
use std::collections::{BTreeSet, HashMap, HashSet};

/// The built-in schema texts, `(file name, text)`, embedded from `schemas/`.
pub const BUILTIN_TEXTS: [(&str, &str); 5] = [
    ("vm.yaml", include_str!("../../../schemas/vm.yaml")),
    ("disk.yaml", include_str!("../../../schemas/disk.yaml")),
    ("nic.yaml", include_str!("../../../schemas/nic.yaml")),
    ("guest.yaml", include_str!("../../../schemas/guest.yaml")),
    (
        "managed-deployment.yaml",
        include_str!("../../../schemas/managed-deployment.yaml"),
    ),
];

/// Every loaded form, resolved, in load order.
#[derive(Debug, Clone)]
pub struct Forms {
    forms: Vec<FormSchema>,
}

impl Forms {
    /// The built-in forms from `schemas/`. They are checked by this crate's tests, so a failure
    /// here is a build defect; it is still returned as an error rather than a panic.
    pub fn builtin() -> Result<Forms, SchemaError> {
        Forms::from_texts(BUILTIN_TEXTS.iter().map(|(_, text)| *text))
    }

    /// Loads forms from schema texts (any order; includes are resolved by id).
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Forms, SchemaError> {
        let mut specs: Vec<FormSpec> = Vec::new();
        for text in texts {
            let spec = FormSpec::from_yaml(text)?;
            if specs.iter().any(|s| s.id == spec.id) {
                return Err(SchemaError::DuplicateForm { form: spec.id });
            }
            specs.push(spec);
        }
        let by_id: HashMap<&str, &FormSpec> = specs.iter().map(|s| (s.id.as_str(), s)).collect();
        let mut resolved: HashMap<String, FormSchema> = HashMap::new();
        for spec in &specs {
            resolve(spec, &by_id, &mut resolved, &mut Vec::new())?;
        }
        let forms = specs
            .iter()
            .filter_map(|s| resolved.remove(&s.id))
            .collect();
        Ok(Forms { forms })
    }

    /// The form with this id.
    pub fn get(&self, id: &str) -> Option<&FormSchema> {
        self.forms.iter().find(|f| f.id == id)
    }

    /// Every form, in load order.
    pub fn iter(&self) -> impl Iterator<Item = &FormSchema> + '_ {
        self.forms.iter()
    }

    /// Every form id, in load order.
    pub fn ids(&self) -> Vec<&str> {
        self.forms.iter().map(|f| f.id.as_str()).collect()
    }

    /// The ids of every field any form marks secret: the key set for
    /// [`crate::redact::redact_value`].
    pub fn secret_fields(&self) -> HashSet<String> {
        self.forms
            .iter()
            .flat_map(|f| f.secret_fields())
            .map(str::to_owned)
            .collect()
    }
}

fn resolve(
    spec: &FormSpec,
    by_id: &HashMap<&str, &FormSpec>,
    resolved: &mut HashMap<String, FormSchema>,
    visiting: &mut Vec<String>,
) -> Result<(), SchemaError> {
    if resolved.contains_key(&spec.id) {
        return Ok(());
    }
    if visiting.contains(&spec.id) {
        return Err(SchemaError::IncludeCycle {
            form: spec.id.clone(),
        });
    }
    visiting.push(spec.id.clone());
    let mut fields = Vec::new();
    let mut sets = Vec::new();
    let mut groups = Vec::new();
    let mut includes = Vec::new();
    for inc in &spec.include {
        let inc_spec = by_id
            .get(inc.form.as_str())
            .ok_or_else(|| SchemaError::UnknownInclude {
                form: spec.id.clone(),
                include: inc.form.clone(),
            })?;
        resolve(inc_spec, by_id, resolved, visiting)?;
        let Some(inc_form) = resolved.get(&inc.form) else {
            return Err(SchemaError::UnknownInclude {
                form: spec.id.clone(),
                include: inc.form.clone(),
            });
        };
        for omitted in &inc.omit {
            if inc_form.field(omitted).is_none() {
                return Err(SchemaError::UnknownOmit {
                    form: spec.id.clone(),
                    include: inc.form.clone(),
                    field: omitted.clone(),
                });
            }
        }
        let kept = |id: &String| !inc.omit.contains(id);
        fields.extend(inc_form.fields.iter().filter(|f| kept(&f.id)).cloned());
        sets.extend(inc_form.parameter_sets.iter().cloned());
        groups.extend(inc_form.one_of.iter().map(|g| OneOf {
            members: g.members.iter().filter(|m| kept(m)).cloned().collect(),
            ..g.clone()
        }));
        includes.push(inc.form.clone());
    }
    visiting.pop();
    let form = resolve_one(spec, fields, sets, groups, includes)?;
    resolved.insert(spec.id.clone(), form);
    Ok(())
}

/// Resolves `spec` given the fields, sets and groups taken over from its includes.
pub(super) fn resolve_one(
    spec: &FormSpec,
    mut fields: Vec<Field>,
    mut sets: Vec<ParameterSet>,
    mut groups: Vec<OneOf>,
    includes: Vec<String>,
) -> Result<FormSchema, SchemaError> {
    let form = spec.id.clone();
    fields.extend(spec.fields.iter().cloned());
    let mut seen = HashSet::new();
    for f in &fields {
        if !seen.insert(f.id.as_str()) {
            return Err(SchemaError::DuplicateField {
                form,
                field: f.id.clone(),
            });
        }
    }

    sets.extend(spec.parameter_sets.iter().cloned());
    let mut set_ids = HashSet::new();
    sets.retain(|s| set_ids.insert(s.id.clone()));
    let used: BTreeSet<&str> = fields
        .iter()
        .filter_map(|f| f.parameter_set.as_ref().map(|m| m.id.as_str()))
        .collect();
    for f in &fields {
        if let Some(m) = &f.parameter_set {
            if !set_ids.contains(&m.id) {
                return Err(SchemaError::UnknownParameterSet {
                    form,
                    field: f.id.clone(),
                    set: m.id.clone(),
                });
            }
        }
    }
    sets.retain(|s| used.contains(s.id.as_str()));
    for s in &sets {
        let has_required = fields.iter().any(|f| {
            f.parameter_set
                .as_ref()
                .is_some_and(|m| m.id == s.id && m.role == SetRole::Required)
        });
        if !has_required {
            return Err(SchemaError::EmptyParameterSet {
                form,
                set: s.id.clone(),
            });
        }
    }

    groups.extend(spec.one_of.iter().cloned());
    for g in &groups {
        for m in &g.members {
            if !seen.contains(m.as_str()) {
                return Err(SchemaError::UnknownField {
                    form,
                    place: format!("one_of {}", g.id),
                    field: m.clone(),
                });
            }
        }
    }
    groups.retain(|g| !g.members.is_empty());
    if let Some(h) = &spec.guest_host_name {
        if !seen.contains(h.as_str()) {
            return Err(SchemaError::UnknownField {
                form,
                place: "guest_host_name".into(),
                field: h.clone(),
            });
        }
    }

    let mut patterns = HashMap::new();
    let mut defaults = HashMap::new();
    for f in &fields {
        check_attributes(&form, f)?;
        if let Some(p) = &f.pattern {
            let re =
                Regex::new(&format!("^(?:{p})$")).map_err(|source| SchemaError::BadPattern {
                    form: form.clone(),
                    field: f.id.clone(),
                    source,
                })?;
            patterns.insert(f.id.clone(), re);
        }
        if let Some(d) = &f.default {
            let normalized = crate::validate::normalize_default(f, patterns.get(&f.id), d)
                .map_err(|problem| SchemaError::BadDefault {
                    form: form.clone(),
                    field: f.id.clone(),
                    problem,
                })?;
            defaults.insert(f.id.clone(), normalized);
        }
    }

    Ok(FormSchema {
        id: spec.id.clone(),
        version: spec.version,
        title: spec.title.clone(),
        description: spec.description.clone(),
        fields,
        parameter_sets: sets,
        one_of: groups,
        guest_host_name: spec.guest_host_name.clone(),
        includes,
        patterns,
        defaults,
    })
}

fn check_attributes(form: &str, f: &Field) -> Result<(), SchemaError> {
    let bad = |problem: &str| {
        Err(SchemaError::BadAttribute {
            form: form.to_owned(),
            field: f.id.clone(),
            problem: problem.to_owned(),
        })
    };
    if f.id.trim().is_empty() {
        return bad("field id is empty");
    }
    if (f.min.is_some() || f.max.is_some()) && f.kind != FieldType::Integer {
        return bad("min and max apply to integer fields only");
    }
    if let (Some(lo), Some(hi)) = (f.min, f.max) {
        if lo > hi {
            return bad("min is greater than max");
        }
    }
    if (f.max_length.is_some() || f.pattern.is_some()) && !f.kind.is_text() {
        return bad("max_length and pattern apply to text fields only");
    }
    if f.kind == FieldType::Enum && f.choices.is_empty() {
        return bad("an enum field needs choices");
    }
    if f.kind != FieldType::Enum && !f.choices.is_empty() {
        return bad("choices apply to enum fields only");
    }
    if f.required && f.parameter_set.is_some() {
        return bad("a parameter set member cannot also be required on its own");
    }
    Ok(())
}
