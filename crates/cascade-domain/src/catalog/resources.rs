//! Resource categories, resource types and service templates, with the per-reseller
//! provisioning overrides of a template.
//!
//! Every catalog object has an *owner*: a seller (the provider or a reseller). Objects
//! reference each other by id, and a reference is only valid when the referenced object
//! is visible to the owner: its own, or (for resource types) one of its ancestors',
//! because what was delegated down to a reseller is built on its vendors' resource
//! types. Whether an id is visible is a storage question; the validators here take the
//! answer as a set of known ids, so that every rule stays pure and all field errors are
//! reported at once.
//!
//! ## Provisioning settings and overrides
//!
//! A template carries typed settings (`key → {type, value}`) passed to the connector.
//! A reseller may override values of a delegated template for its own customers
//! (e.g. a country-specific configuration). The settings a connector receives for an
//! account are [`effective_settings`]: the template's, then each reseller's override on
//! the vendor chain from the top down, so the override nearest to the customer wins.
//! Overrides may only set keys the template defines, with the same type; an override
//! that became stale because the template later dropped a key or changed its type is
//! ignored for that key (the template's value applies) rather than failing provisioning.

use super::text::{Localized, LocalizedInput};
use crate::account::AccountKind;
use crate::clock::Timestamp;
use crate::ids::AccountId;
use crate::validation::{FieldError, ValidationErrors, bounded_text};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

macro_rules! catalog_id {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {$(
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    )*};
}
pub(crate) use catalog_id;

catalog_id!(ResourceCategoryId, ResourceTypeId, ServiceTemplateId);

/// Longest multilingual name of a catalog object, per language.
pub const NAME_MAX: usize = 200;
/// Longest multilingual description, per language.
pub const DESCRIPTION_MAX: usize = 2000;
/// Longest unit (`GB`, `mailbox`).
pub const UNIT_MAX: usize = 32;
/// Most resources in one template.
pub const TEMPLATE_RESOURCES_MAX: usize = 200;
/// Most settings in one template or override.
pub const SETTINGS_MAX: usize = 200;
/// Longest string setting value.
pub const SETTING_STRING_MAX: usize = 1000;

/// A code: 1–64 ASCII letters, digits, `_`, `.` or `-`. Codes identify catalog objects
/// within one owner (resource types, categories, sales categories) and name connectors.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Code(String);

impl Code {
    pub const MAX: usize = 64;

    pub fn parse(s: &str) -> Result<Code, FieldError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(FieldError::new("", "required", "must not be empty"));
        }
        if s.len() > Self::MAX {
            return Err(FieldError::new(
                "",
                "too_long",
                format!("a code has at most {} characters", Self::MAX),
            ));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(FieldError::new(
                "",
                "invalid_code",
                format!("`{s}` is not a code: use letters, digits, `_`, `.` and `-`"),
            ));
        }
        Ok(Code(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Catalog objects belong to sellers: the provider or a reseller, never a customer.
pub fn check_owner(kind: AccountKind) -> Result<(), FieldError> {
    if kind.is_seller() {
        Ok(())
    } else {
        Err(FieldError::new(
            "account_id",
            "owner_not_seller",
            "catalog objects belong to the provider or a reseller, not to a customer",
        ))
    }
}

fn localized(
    errs: &mut ValidationErrors,
    field: &str,
    raw: &LocalizedInput,
    max: usize,
) -> Option<Localized> {
    match Localized::parse(raw, max) {
        Ok(l) => Some(l),
        Err(e) => {
            for x in e.0 {
                errs.push(x.under(field));
            }
            None
        }
    }
}

fn known_ref<T: Ord>(
    errs: &mut ValidationErrors,
    field: &str,
    id: Option<T>,
    known: &BTreeSet<T>,
    code: &'static str,
    what: &str,
) -> Option<T> {
    let id = id?;
    if known.contains(&id) {
        Some(id)
    } else {
        errs.push(FieldError::new(
            field,
            code,
            format!("no such {what} visible to the owner"),
        ));
        None
    }
}

// ---------------------------------------------------------------------------------------
// Resource categories
// ---------------------------------------------------------------------------------------

/// Groups resource types for display and tax. With a parent resource type, the
/// resources of this category can only be bought together with that resource (up-sell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceCategory {
    pub id: ResourceCategoryId,
    pub owner_account_id: AccountId,
    pub code: Code,
    pub name: Localized,
    pub parent_resource_type_id: Option<ResourceTypeId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A validated resource category to be written (also the full state an update writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceCategoryData {
    pub code: Code,
    pub name: Localized,
    pub parent_resource_type_id: Option<ResourceTypeId>,
}

/// Raw input of a new resource category.
#[derive(Debug, Clone)]
pub struct ResourceCategoryInput {
    pub code: String,
    pub name: LocalizedInput,
    pub parent_resource_type_id: Option<i64>,
}

impl ResourceCategoryInput {
    /// `visible_types`: the resource types visible to the owner among those referenced.
    pub fn validate(
        &self,
        visible_types: &BTreeSet<ResourceTypeId>,
    ) -> Result<ResourceCategoryData, ValidationErrors> {
        let mut errs = ValidationErrors::new();
        let code = errs.check("code", Code::parse(&self.code));
        let name = localized(&mut errs, "name", &self.name, NAME_MAX);
        let parent = self.parent_resource_type_id.map(ResourceTypeId);
        known_ref(
            &mut errs,
            "parent_resource_type_id",
            parent,
            visible_types,
            "unknown_resource_type",
            "resource type",
        );
        errs.into_result()?;
        match (code, name) {
            (Some(code), Some(name)) => Ok(ResourceCategoryData {
                code,
                name,
                parent_resource_type_id: parent,
            }),
            _ => Err(FieldError::new("", "invalid", "invalid resource category").into()),
        }
    }
}

/// Raw partial update; `None` keeps a field, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct ResourceCategoryPatch {
    pub code: Option<String>,
    pub name: Option<LocalizedInput>,
    pub parent_resource_type_id: Option<Option<i64>>,
}

impl ResourceCategoryPatch {
    /// The referenced resource type, if the patch sets one (to look up its visibility).
    pub fn referenced_type(&self) -> Option<ResourceTypeId> {
        self.parent_resource_type_id.flatten().map(ResourceTypeId)
    }

    pub fn apply(
        &self,
        current: &ResourceCategory,
        visible_types: &BTreeSet<ResourceTypeId>,
    ) -> Result<ResourceCategoryData, ValidationErrors> {
        ResourceCategoryInput {
            code: self
                .code
                .clone()
                .unwrap_or_else(|| current.code.as_str().to_string()),
            name: self
                .name
                .clone()
                .unwrap_or_else(|| LocalizedInput::from(&current.name)),
            parent_resource_type_id: match self.parent_resource_type_id {
                Some(v) => v,
                None => current.parent_resource_type_id.map(|t| t.0),
            },
        }
        .validate(&with_current(
            visible_types,
            self.parent_resource_type_id.is_none(),
            current.parent_resource_type_id,
        ))
    }
}

/// A reference the patch leaves untouched stays valid even if it is not re-checked.
fn with_current<T: Ord + Copy>(known: &BTreeSet<T>, kept: bool, current: Option<T>) -> BTreeSet<T> {
    let mut k = known.clone();
    if let (true, Some(c)) = (kept, current) {
        k.insert(c);
    }
    k
}

// ---------------------------------------------------------------------------------------
// Resource types
// ---------------------------------------------------------------------------------------

/// What a resource type counts: units (mailboxes, GB) or a feature that is on or off
/// ("Daily backup"). Panels show a gauge of usage against the limit for quantities and
/// on/off for booleans, whatever the rate's limits say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    #[default]
    Quantity,
    Boolean,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Quantity => "quantity",
            ResourceKind::Boolean => "boolean",
        }
    }

    pub fn parse(s: &str) -> Result<ResourceKind, FieldError> {
        match s {
            "quantity" => Ok(ResourceKind::Quantity),
            "boolean" => Ok(ResourceKind::Boolean),
            _ => Err(FieldError::new(
                "kind",
                "unknown_kind",
                "quantity or boolean",
            )),
        }
    }

    /// Is a feature of this kind on with `units` (a boolean resource has at most 1)?
    pub fn is_on(self, units: i64) -> bool {
        units != 0
    }
}

/// Something that can be provisioned and counted: "Mailbox", "Disk space (GB)".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceType {
    pub id: ResourceTypeId,
    pub owner_account_id: AccountId,
    pub code: Code,
    /// The connector (service) that provisions it.
    pub service: Code,
    pub unit: String,
    pub kind: ResourceKind,
    pub name: Localized,
    pub description: Option<Localized>,
    pub category_id: Option<ResourceCategoryId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A validated resource type to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceTypeData {
    pub code: Code,
    pub service: Code,
    pub unit: String,
    pub kind: ResourceKind,
    pub name: Localized,
    pub description: Option<Localized>,
    pub category_id: Option<ResourceCategoryId>,
}

#[derive(Debug, Clone)]
pub struct ResourceTypeInput {
    pub code: String,
    pub service: String,
    pub unit: String,
    pub kind: ResourceKind,
    pub name: LocalizedInput,
    pub description: Option<LocalizedInput>,
    pub category_id: Option<i64>,
}

impl ResourceTypeInput {
    /// `own_categories`: the resource categories of the same owner among those referenced.
    pub fn validate(
        &self,
        own_categories: &BTreeSet<ResourceCategoryId>,
    ) -> Result<ResourceTypeData, ValidationErrors> {
        let mut errs = ValidationErrors::new();
        let code = errs.check("code", Code::parse(&self.code));
        let service = errs.check("service", Code::parse(&self.service));
        let unit = errs.check("unit", bounded_text(&self.unit, UNIT_MAX));
        let name = localized(&mut errs, "name", &self.name, NAME_MAX);
        let description = self
            .description
            .as_ref()
            .and_then(|d| localized(&mut errs, "description", d, DESCRIPTION_MAX));
        let category = self.category_id.map(ResourceCategoryId);
        if let Some(c) = category
            && !own_categories.contains(&c)
        {
            errs.push(FieldError::new(
                "category_id",
                "unknown_resource_category",
                "no such resource category of the owner",
            ));
        }
        errs.into_result()?;
        match (code, service, unit, name) {
            (Some(code), Some(service), Some(unit), Some(name)) => Ok(ResourceTypeData {
                code,
                service,
                unit,
                kind: self.kind,
                name,
                description,
                category_id: category,
            }),
            _ => Err(FieldError::new("", "invalid", "invalid resource type").into()),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ResourceTypePatch {
    pub code: Option<String>,
    pub service: Option<String>,
    pub unit: Option<String>,
    pub kind: Option<ResourceKind>,
    pub name: Option<LocalizedInput>,
    pub description: Option<Option<LocalizedInput>>,
    pub category_id: Option<Option<i64>>,
}

impl ResourceTypePatch {
    pub fn referenced_category(&self) -> Option<ResourceCategoryId> {
        self.category_id.flatten().map(ResourceCategoryId)
    }

    pub fn apply(
        &self,
        current: &ResourceType,
        own_categories: &BTreeSet<ResourceCategoryId>,
    ) -> Result<ResourceTypeData, ValidationErrors> {
        ResourceTypeInput {
            code: self
                .code
                .clone()
                .unwrap_or_else(|| current.code.as_str().to_string()),
            service: self
                .service
                .clone()
                .unwrap_or_else(|| current.service.as_str().to_string()),
            unit: self.unit.clone().unwrap_or_else(|| current.unit.clone()),
            kind: self.kind.unwrap_or(current.kind),
            name: self
                .name
                .clone()
                .unwrap_or_else(|| LocalizedInput::from(&current.name)),
            description: match &self.description {
                Some(d) => d.clone(),
                None => current.description.as_ref().map(LocalizedInput::from),
            },
            category_id: match self.category_id {
                Some(c) => c,
                None => current.category_id.map(|c| c.0),
            },
        }
        .validate(&with_current(
            own_categories,
            self.category_id.is_none(),
            current.category_id,
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------

/// A typed provisioning setting value: `{"type": "string" | "integer" | "boolean", "value": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum SettingValue {
    String(String),
    Integer(i64),
    Boolean(bool),
}

impl SettingValue {
    pub fn type_name(&self) -> &'static str {
        match self {
            SettingValue::String(_) => "string",
            SettingValue::Integer(_) => "integer",
            SettingValue::Boolean(_) => "boolean",
        }
    }
    pub fn same_type(&self, other: &SettingValue) -> bool {
        self.type_name() == other.type_name()
    }
}

/// Provisioning settings: key → typed value, keys sorted.
pub type Settings = BTreeMap<String, SettingValue>;

/// A setting as it comes from the edge: the type name and an untyped JSON value.
#[derive(Debug, Clone)]
pub struct SettingInput {
    pub kind: String,
    pub value: serde_json::Value,
}

/// A setting key: 1–64 of `a-z 0-9 _ . -`.
pub fn check_setting_key(k: &str) -> Result<(), FieldError> {
    let ok = !k.is_empty()
        && k.len() <= 64
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "",
            "invalid_setting_key",
            format!("`{k}` is not a setting key: 1–64 of a-z, 0-9, `_`, `.`, `-`"),
        ))
    }
}

impl SettingInput {
    pub fn parse(&self) -> Result<SettingValue, FieldError> {
        use serde_json::Value;
        match (self.kind.as_str(), &self.value) {
            ("string", Value::String(s)) => {
                if s.chars().count() > SETTING_STRING_MAX {
                    Err(FieldError::new(
                        "value",
                        "too_long",
                        format!("a string setting has at most {SETTING_STRING_MAX} characters"),
                    ))
                } else if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                    Err(FieldError::new(
                        "value",
                        "control_characters",
                        "must not contain control characters",
                    ))
                } else {
                    Ok(SettingValue::String(s.clone()))
                }
            }
            ("integer", Value::Number(n)) => {
                n.as_i64().map(SettingValue::Integer).ok_or_else(|| {
                    FieldError::new(
                        "value",
                        "not_an_integer",
                        "must be a whole number in the 64-bit range",
                    )
                })
            }
            ("boolean", Value::Bool(b)) => Ok(SettingValue::Boolean(*b)),
            ("string" | "integer" | "boolean", _) => Err(FieldError::new(
                "value",
                "type_mismatch",
                format!("the value is not of type `{}`", self.kind),
            )),
            (other, _) => Err(FieldError::new(
                "type",
                "unknown_setting_type",
                format!("unknown setting type `{other}`: use string, integer or boolean"),
            )),
        }
    }
}

/// Validate a settings map; errors are named `<prefix>.<key>[.type|.value]`.
pub fn parse_settings(
    raw: &BTreeMap<String, SettingInput>,
    prefix: &str,
) -> Result<Settings, ValidationErrors> {
    let mut errs = ValidationErrors::new();
    if raw.len() > SETTINGS_MAX {
        errs.push(FieldError::new(
            prefix,
            "too_many",
            format!("at most {SETTINGS_MAX} settings"),
        ));
    }
    let mut out = Settings::new();
    for (k, v) in raw {
        let field = format!("{prefix}.{k}");
        if errs.check(&field, check_setting_key(k)).is_none() {
            continue;
        }
        match v.parse() {
            Ok(val) => {
                out.insert(k.clone(), val);
            }
            Err(e) => errs.push(e.under(&field)),
        }
    }
    errs.into_result().map(|_| out)
}

/// Validate a reseller's override against the template's settings: only keys the
/// template defines, each with the template's type. Errors name `settings.<key>`.
pub fn validate_override(
    template: &Settings,
    raw: &BTreeMap<String, SettingInput>,
) -> Result<Settings, ValidationErrors> {
    let parsed = parse_settings(raw, "settings")?;
    let mut errs = ValidationErrors::new();
    for (k, v) in &parsed {
        match template.get(k) {
            None => errs.push(FieldError::new(
                format!("settings.{k}"),
                "unknown_setting",
                format!("the template has no setting `{k}`"),
            )),
            Some(t) if !t.same_type(v) => errs.push(FieldError::new(
                format!("settings.{k}"),
                "setting_type_mismatch",
                format!(
                    "the template's setting `{k}` is of type `{}`",
                    t.type_name()
                ),
            )),
            Some(_) => {}
        }
    }
    errs.into_result().map(|_| parsed)
}

/// The settings a connector receives: the template's settings, then each override in
/// `overrides_top_down` (from the reseller nearest the provider down to the customer's
/// vendor), later ones replacing earlier ones: the nearest override wins. Keys the
/// template does not define, or whose type no longer matches, are ignored.
pub fn effective_settings(
    template_settings: &Settings,
    overrides_top_down: &[(AccountId, Settings)],
) -> Settings {
    effective_settings_sourced(template_settings, overrides_top_down)
        .into_iter()
        .map(|(k, (v, _))| (k, v))
        .collect()
}

/// [`effective_settings`] with where each value comes from: `None` for the template's
/// own value, else the reseller whose override won (what a panel shows next to it).
pub fn effective_settings_sourced(
    template_settings: &Settings,
    overrides_top_down: &[(AccountId, Settings)],
) -> BTreeMap<String, (SettingValue, Option<AccountId>)> {
    let mut out: BTreeMap<String, (SettingValue, Option<AccountId>)> = template_settings
        .iter()
        .map(|(k, v)| (k.clone(), (v.clone(), None)))
        .collect();
    for (account, o) in overrides_top_down {
        for (k, v) in o {
            if let Some(cur) = out.get_mut(k)
                && cur.0.same_type(v)
            {
                *cur = (v.clone(), Some(*account));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Service templates
// ---------------------------------------------------------------------------------------

/// −1 stands for an unlimited default limit.
pub const UNLIMITED: i64 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateResource {
    pub resource_type_id: ResourceTypeId,
    /// −1 unlimited, else ≥ 0.
    pub default_limit: i64,
}

/// The technical bundle: resource types with default limits and the provisioning
/// settings passed to connectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceTemplate {
    pub id: ServiceTemplateId,
    pub owner_account_id: AccountId,
    pub name: String,
    pub resources: Vec<TemplateResource>,
    pub settings: Settings,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTemplateData {
    pub name: String,
    pub resources: Vec<TemplateResource>,
    pub settings: Settings,
}

#[derive(Debug, Clone)]
pub struct TemplateResourceInput {
    pub resource_type_id: i64,
    pub default_limit: i64,
}

#[derive(Debug, Clone)]
pub struct ServiceTemplateInput {
    pub name: String,
    pub resources: Vec<TemplateResourceInput>,
    pub settings: BTreeMap<String, SettingInput>,
}

impl ServiceTemplateInput {
    /// The resource types referenced, to look up which are visible to the owner.
    pub fn referenced_types(&self) -> Vec<ResourceTypeId> {
        self.resources
            .iter()
            .map(|r| ResourceTypeId(r.resource_type_id))
            .collect()
    }

    /// `visible_types`: the referenced resource types owned by the template's owner or
    /// one of its ancestors.
    pub fn validate(
        &self,
        visible_types: &BTreeSet<ResourceTypeId>,
    ) -> Result<ServiceTemplateData, ValidationErrors> {
        let mut errs = ValidationErrors::new();
        let name = errs.check("name", bounded_text(&self.name, NAME_MAX));
        if self.resources.len() > TEMPLATE_RESOURCES_MAX {
            errs.push(FieldError::new(
                "resources",
                "too_many",
                format!("at most {TEMPLATE_RESOURCES_MAX} resources"),
            ));
        }
        let mut seen = BTreeSet::new();
        let mut resources = Vec::with_capacity(self.resources.len());
        for (i, r) in self.resources.iter().enumerate() {
            let f = format!("resources[{i}]");
            let id = ResourceTypeId(r.resource_type_id);
            if !visible_types.contains(&id) {
                errs.push(FieldError::new(
                    format!("{f}.resource_type_id"),
                    "unknown_resource_type",
                    "no such resource type visible to the owner",
                ));
            } else if !seen.insert(id) {
                errs.push(FieldError::new(
                    format!("{f}.resource_type_id"),
                    "duplicate_resource",
                    "each resource type at most once",
                ));
            }
            if r.default_limit < UNLIMITED {
                errs.push(FieldError::new(
                    format!("{f}.default_limit"),
                    "invalid_limit",
                    "−1 (unlimited) or a number ≥ 0",
                ));
            }
            resources.push(TemplateResource {
                resource_type_id: id,
                default_limit: r.default_limit,
            });
        }
        let settings = match parse_settings(&self.settings, "settings") {
            Ok(s) => s,
            Err(e) => {
                errs.0.extend(e.0);
                Settings::new()
            }
        };
        errs.into_result()?;
        Ok(ServiceTemplateData {
            name: name.unwrap_or_default(),
            resources,
            settings,
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct ServiceTemplatePatch {
    pub name: Option<String>,
    pub resources: Option<Vec<TemplateResourceInput>>,
    pub settings: Option<BTreeMap<String, SettingInput>>,
}

impl ServiceTemplatePatch {
    /// The resource types of the template after the patch (to look up visibility).
    pub fn referenced_types(&self, current: &ServiceTemplate) -> Vec<ResourceTypeId> {
        match &self.resources {
            Some(r) => r
                .iter()
                .map(|r| ResourceTypeId(r.resource_type_id))
                .collect(),
            None => current
                .resources
                .iter()
                .map(|r| r.resource_type_id)
                .collect(),
        }
    }

    pub fn apply(
        &self,
        current: &ServiceTemplate,
        visible_types: &BTreeSet<ResourceTypeId>,
    ) -> Result<ServiceTemplateData, ValidationErrors> {
        let current_settings = || {
            current
                .settings
                .iter()
                .map(|(k, v)| {
                    let value = match v {
                        SettingValue::String(s) => serde_json::Value::String(s.clone()),
                        SettingValue::Integer(n) => serde_json::Value::from(*n),
                        SettingValue::Boolean(b) => serde_json::Value::Bool(*b),
                    };
                    (
                        k.clone(),
                        SettingInput {
                            kind: v.type_name().to_string(),
                            value,
                        },
                    )
                })
                .collect()
        };
        let mut visible = visible_types.clone();
        if self.resources.is_none() {
            // Untouched resources stay valid.
            visible.extend(current.resources.iter().map(|r| r.resource_type_id));
        }
        ServiceTemplateInput {
            name: self.name.clone().unwrap_or_else(|| current.name.clone()),
            resources: match &self.resources {
                Some(r) => r.clone(),
                None => current
                    .resources
                    .iter()
                    .map(|r| TemplateResourceInput {
                        resource_type_id: r.resource_type_id.0,
                        default_limit: r.default_limit,
                    })
                    .collect(),
            },
            settings: self.settings.clone().unwrap_or_else(current_settings),
        }
        .validate(&visible)
    }
}

/// A reseller's override of a template's settings, for its own customers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateOverride {
    pub template_id: ServiceTemplateId,
    pub account_id: AccountId,
    pub settings: Settings,
    pub updated_at: Timestamp,
}

/// Overrides are set by resellers (the provider edits its templates directly).
pub fn check_override_account(kind: AccountKind) -> Result<(), FieldError> {
    if kind == AccountKind::Reseller {
        Ok(())
    } else {
        Err(FieldError::new(
            "account_id",
            "not_a_reseller",
            "provisioning overrides are set for a reseller's customers; the account is not a reseller",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn loc(text: &str) -> LocalizedInput {
        LocalizedInput {
            default: "en".into(),
            values: [("en".to_string(), text.to_string())].into(),
        }
    }

    fn s(kind: &str, value: serde_json::Value) -> SettingInput {
        SettingInput {
            kind: kind.into(),
            value,
        }
    }

    fn settings(pairs: &[(&str, SettingValue)]) -> Settings {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn codes() {
        for ok in ["mail", "disk_space.GB", "a-b", &"x".repeat(64)] {
            assert_eq!(Code::parse(ok).unwrap().as_str(), ok);
        }
        assert_eq!(Code::parse(" mail ").unwrap().as_str(), "mail");
        assert_eq!(Code::parse("").unwrap_err().code, "required");
        assert_eq!(Code::parse(&"x".repeat(65)).unwrap_err().code, "too_long");
        for bad in ["a b", "mäil", "a/b", "a;drop"] {
            assert_eq!(Code::parse(bad).unwrap_err().code, "invalid_code", "{bad}");
        }
    }

    #[test]
    fn owners_are_sellers() {
        assert!(check_owner(AccountKind::Provider).is_ok());
        assert!(check_owner(AccountKind::Reseller).is_ok());
        assert_eq!(
            check_owner(AccountKind::Customer).unwrap_err().code,
            "owner_not_seller"
        );
        assert!(check_override_account(AccountKind::Reseller).is_ok());
        assert!(check_override_account(AccountKind::Provider).is_err());
        assert!(check_override_account(AccountKind::Customer).is_err());
    }

    #[test]
    fn resource_type_reports_every_bad_field() {
        let input = ResourceTypeInput {
            code: "bad code".into(),
            service: "".into(),
            unit: "u".repeat(33),
            kind: ResourceKind::Quantity,
            name: LocalizedInput {
                default: "en".into(),
                values: [("xx-!!".to_string(), "n".to_string())].into(),
            },
            description: Some(loc(&"d".repeat(DESCRIPTION_MAX + 1))),
            category_id: Some(9),
        };
        let e = input.validate(&BTreeSet::new()).unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "code",
                "service",
                "unit",
                "name.values.xx-!!",
                "description.values.en",
                "category_id"
            ]
        );
    }

    #[test]
    fn resource_type_patch_keeps_and_clears() {
        let current = ResourceType {
            id: ResourceTypeId(1),
            owner_account_id: AccountId(1),
            code: Code::parse("mbox").unwrap(),
            service: Code::parse("mail").unwrap(),
            unit: "mailbox".into(),
            kind: ResourceKind::Boolean,
            name: Localized::new("en", "Mailbox"),
            description: Some(Localized::new("en", "A mailbox")),
            category_id: Some(ResourceCategoryId(7)),
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        };
        // The current category need not be re-checked when untouched.
        let next = ResourceTypePatch {
            unit: Some("box".into()),
            ..Default::default()
        }
        .apply(&current, &BTreeSet::new())
        .unwrap();
        assert_eq!(
            (next.unit.as_str(), next.category_id, next.kind),
            ("box", Some(ResourceCategoryId(7)), ResourceKind::Boolean)
        );
        let next = ResourceTypePatch {
            kind: Some(ResourceKind::Quantity),
            ..Default::default()
        }
        .apply(&current, &BTreeSet::new())
        .unwrap();
        assert_eq!(next.kind, ResourceKind::Quantity);
        assert_eq!(ResourceKind::parse("boolean"), Ok(ResourceKind::Boolean));
        assert_eq!(
            ResourceKind::parse("bool").unwrap_err().code,
            "unknown_kind"
        );
        let next = ResourceTypePatch {
            description: Some(None),
            category_id: Some(None),
            ..Default::default()
        }
        .apply(&current, &BTreeSet::new())
        .unwrap();
        assert_eq!((next.description, next.category_id), (None, None));
        let e = ResourceTypePatch {
            category_id: Some(Some(8)),
            ..Default::default()
        }
        .apply(&current, &BTreeSet::new())
        .unwrap_err();
        assert_eq!(e.0[0].code, "unknown_resource_category");
    }

    #[test]
    fn category_parent_must_be_visible() {
        let input = ResourceCategoryInput {
            code: "addons".into(),
            name: loc("Add-ons"),
            parent_resource_type_id: Some(5),
        };
        assert_eq!(
            input.validate(&BTreeSet::new()).unwrap_err().0[0].field,
            "parent_resource_type_id"
        );
        let ok = input.validate(&[ResourceTypeId(5)].into()).unwrap();
        assert_eq!(ok.parent_resource_type_id, Some(ResourceTypeId(5)));
    }

    #[test]
    fn settings_are_typed_and_bounded() {
        let raw: BTreeMap<String, SettingInput> = [
            ("quota".to_string(), s("integer", json!(10))),
            ("region".to_string(), s("string", json!("eu"))),
            ("ssl".to_string(), s("boolean", json!(true))),
        ]
        .into();
        let parsed = parse_settings(&raw, "settings").unwrap();
        assert_eq!(parsed["quota"], SettingValue::Integer(10));
        assert_eq!(
            serde_json::to_value(&parsed).unwrap()["region"],
            json!({"type": "string", "value": "eu"})
        );
        let round: Settings =
            serde_json::from_value(serde_json::to_value(&parsed).unwrap()).unwrap();
        assert_eq!(round, parsed);

        let bad: BTreeMap<String, SettingInput> = [
            ("Bad Key".to_string(), s("string", json!("x"))),
            ("a".to_string(), s("float", json!(1.5))),
            ("b".to_string(), s("integer", json!("7"))),
            ("c".to_string(), s("integer", json!(1.5))),
            (
                "d".to_string(),
                s("string", json!("x".repeat(SETTING_STRING_MAX + 1))),
            ),
            ("e".to_string(), s("boolean", json!(null))),
        ]
        .into();
        let e = parse_settings(&bad, "settings").unwrap_err();
        let got: Vec<_> = e.0.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            got,
            vec![
                ("settings.Bad Key", "invalid_setting_key"),
                ("settings.a.type", "unknown_setting_type"),
                ("settings.b.value", "type_mismatch"),
                ("settings.c.value", "not_an_integer"),
                ("settings.d.value", "too_long"),
                ("settings.e.value", "type_mismatch"),
            ]
        );
    }

    #[test]
    fn template_validation() {
        let visible: BTreeSet<_> = [ResourceTypeId(1), ResourceTypeId(2)].into();
        let input = ServiceTemplateInput {
            name: "Mail".into(),
            resources: vec![
                TemplateResourceInput {
                    resource_type_id: 1,
                    default_limit: -1,
                },
                TemplateResourceInput {
                    resource_type_id: 2,
                    default_limit: 0,
                },
            ],
            settings: [("region".to_string(), s("string", json!("eu")))].into(),
        };
        let t = input.validate(&visible).unwrap();
        assert_eq!(t.resources.len(), 2);
        let bad = ServiceTemplateInput {
            name: "".into(),
            resources: vec![
                TemplateResourceInput {
                    resource_type_id: 1,
                    default_limit: -2,
                },
                TemplateResourceInput {
                    resource_type_id: 1,
                    default_limit: 5,
                },
                TemplateResourceInput {
                    resource_type_id: 3,
                    default_limit: 5,
                },
            ],
            settings: [("x".to_string(), s("list", json!([])))].into(),
        };
        let e = bad.validate(&visible).unwrap_err();
        let got: Vec<_> = e.0.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            got,
            vec![
                ("name", "required"),
                ("resources[0].default_limit", "invalid_limit"),
                ("resources[1].resource_type_id", "duplicate_resource"),
                ("resources[2].resource_type_id", "unknown_resource_type"),
                ("settings.x.type", "unknown_setting_type"),
            ]
        );
    }

    #[test]
    fn overrides_only_set_known_keys_of_the_same_type() {
        let template = settings(&[
            ("region", SettingValue::String("eu".into())),
            ("quota", SettingValue::Integer(5)),
        ]);
        let ok = validate_override(
            &template,
            &[("region".to_string(), s("string", json!("fr")))].into(),
        )
        .unwrap();
        assert_eq!(ok["region"], SettingValue::String("fr".into()));
        let e = validate_override(
            &template,
            &[
                ("nope".to_string(), s("string", json!("x"))),
                ("quota".to_string(), s("string", json!("7"))),
            ]
            .into(),
        )
        .unwrap_err();
        let got: Vec<_> = e.0.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            got,
            vec![
                ("settings.nope", "unknown_setting"),
                ("settings.quota", "setting_type_mismatch")
            ]
        );
    }

    #[test]
    fn nearest_override_wins() {
        let template = settings(&[
            ("region", SettingValue::String("eu".into())),
            ("quota", SettingValue::Integer(5)),
            ("ssl", SettingValue::Boolean(false)),
        ]);
        let l1 = (
            AccountId(2),
            settings(&[
                ("region", SettingValue::String("de".into())),
                ("quota", SettingValue::Integer(10)),
            ]),
        );
        let l2 = (
            AccountId(3),
            settings(&[("region", SettingValue::String("fr".into()))]),
        );
        // Customer of L2: provider template, then L1, then L2.
        let e = effective_settings(&template, &[l1.clone(), l2.clone()]);
        // Where each value comes from: the nearest override, or the template.
        let src = effective_settings_sourced(&template, &[l1.clone(), l2.clone()]);
        assert_eq!(src["region"].1, Some(AccountId(3)));
        assert_eq!(src["quota"].1, Some(AccountId(2)));
        assert_eq!(src["ssl"].1, None);
        assert_eq!(e["region"], SettingValue::String("fr".into()));
        assert_eq!(e["quota"], SettingValue::Integer(10));
        assert_eq!(e["ssl"], SettingValue::Boolean(false));
        // Customer of L1: only L1's override.
        let e = effective_settings(&template, std::slice::from_ref(&l1));
        assert_eq!(e["region"], SettingValue::String("de".into()));
        // No overrides: the template.
        assert_eq!(effective_settings(&template, &[]), template);
        // Order matters: the last one (nearest the customer) wins.
        let e = effective_settings(&template, &[l2, l1]);
        assert_eq!(e["region"], SettingValue::String("de".into()));
    }

    #[test]
    fn stale_overrides_are_ignored() {
        let template = settings(&[("quota", SettingValue::Integer(5))]);
        let stale = (
            AccountId(2),
            settings(&[
                ("quota", SettingValue::String("ten".into())),
                ("gone", SettingValue::Boolean(true)),
            ]),
        );
        assert_eq!(effective_settings(&template, &[stale]), template);
    }
}
