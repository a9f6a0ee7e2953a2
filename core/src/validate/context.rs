//! What validation may know about the outside world: the image catalogue and inventory choices.
//!
//! Both are plain data handed in by the caller (the bot from its inventory cache, the CLI from
//! `--inventory FILE`); nothing here fetches anything.

use crate::osfamily::OsFamily;
use crate::schema::FieldType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One image of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    /// The image name as requests spell it.
    pub name: String,
    /// Its OS family, stated explicitly (never inferred).
    pub os_family: OsFamily,
    /// Free text for pickers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Images by name (looked up case-insensitively), each with an explicit OS family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageCatalogue {
    by_name: BTreeMap<String, ImageEntry>,
}

impl ImageCatalogue {
    /// Builds a catalogue; a later entry with the same name (ignoring case) replaces an earlier one.
    pub fn new(entries: impl IntoIterator<Item = ImageEntry>) -> Self {
        let by_name = entries
            .into_iter()
            .map(|e| (e.name.trim().to_lowercase(), e))
            .collect();
        ImageCatalogue { by_name }
    }

    /// The entry for `name` (trimmed, case-insensitive).
    pub fn lookup(&self, name: &str) -> Option<&ImageEntry> {
        self.by_name.get(&name.trim().to_lowercase())
    }

    /// Whether the catalogue is empty.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every entry, by lower-cased name.
    pub fn entries(&self) -> impl Iterator<Item = &ImageEntry> + '_ {
        self.by_name.values()
    }
}

/// Allowed values of the inventory-backed field types. `None` means "not known": any non-empty
/// value is accepted. `Some(list)` means a value outside the list is an `unknown_choice` error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryChoices {
    /// Host names (`host` fields).
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    /// Cluster names (`cluster` fields).
    #[serde(default)]
    pub clusters: Option<Vec<String>>,
    /// Network names (`network` fields).
    #[serde(default)]
    pub networks: Option<Vec<String>>,
    /// Storage class names (`storage_class` fields).
    #[serde(default)]
    pub storage_classes: Option<Vec<String>>,
    /// Image names (`image` fields). The image catalogue alone does not restrict images.
    #[serde(default)]
    pub images: Option<Vec<String>>,
}

impl InventoryChoices {
    /// The choice list for an inventory-backed field type, if one is known.
    pub fn for_type(&self, kind: FieldType) -> Option<&[String]> {
        match kind {
            FieldType::Host => self.hosts.as_deref(),
            FieldType::Cluster => self.clusters.as_deref(),
            FieldType::Network => self.networks.as_deref(),
            FieldType::StorageClass => self.storage_classes.as_deref(),
            FieldType::Image => self.images.as_deref(),
            _ => None,
        }
    }
}

/// Everything [`super::validate`] may consult besides the form and the input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationContext {
    /// Image → OS family, consulted before name inference.
    pub images: ImageCatalogue,
    /// Allowed values of inventory-backed fields.
    pub choices: InventoryChoices,
}

/// The inventory file format of `aetherv validate --inventory FILE` (YAML or JSON):
/// `images: [{name, os_family, description?}]` plus optional choice lists
/// `hosts`, `clusters`, `networks`, `storage_classes` (each a list of names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryFile {
    /// The image catalogue. It gives each image's OS family; it does not restrict `image_name`.
    #[serde(default)]
    pub images: Vec<ImageEntry>,
    /// Known hosts.
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    /// Known clusters.
    #[serde(default)]
    pub clusters: Option<Vec<String>>,
    /// Known networks.
    #[serde(default)]
    pub networks: Option<Vec<String>>,
    /// Known storage classes.
    #[serde(default)]
    pub storage_classes: Option<Vec<String>>,
}

impl InventoryFile {
    /// The validation context this inventory describes.
    pub fn into_context(self) -> ValidationContext {
        ValidationContext {
            images: ImageCatalogue::new(self.images),
            choices: InventoryChoices {
                hosts: self.hosts,
                clusters: self.clusters,
                networks: self.networks,
                storage_classes: self.storage_classes,
                images: None,
            },
        }
    }
}
