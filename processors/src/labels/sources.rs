//! Where a label's value comes from, and the lookup of one rule for one resource.

use super::config::Which;
use super::table::Table;
use sluice_core::batch::Context;
use sluice_core::proto::otlp::common::v1::{KeyValue, any_value};
use std::borrow::Cow;
use std::sync::Arc;

/// One of the tenant, domain and SLA-tier labels, with its sources in the order they are tried.
#[derive(Debug)]
pub struct Rule {
    pub which: Which,
    pub key: Arc<str>,
    pub overwrite: bool,
    pub sources: Vec<Source>,
}

#[derive(Debug)]
pub enum Source {
    /// The batch's tenant.
    Context,
    /// The batch's SLA tier (its tenant's `sla_tier` in the tenants file).
    Tier,
    /// A request header the receiver carried (`Context::metadata`), case-insensitive.
    Header(String),
    /// A resource attribute's value.
    Attribute(String),
    /// The first capture group of a regex searched in a resource attribute.
    Capture(String, regex::Regex),
    /// A table lookup.
    Table(TableKey, Arc<Table>),
    /// A fixed value.
    Default(Arc<str>),
}

/// What a table is keyed by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableKey {
    /// The tenant: the tenant label's value for the resource when the tenant rule found one, else
    /// the batch's tenant.
    Tenant,
    /// A resource attribute's value.
    Attribute(String),
}

/// Why a source gave no value: the reason label of the `missing` counter is that of the last
/// source tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    /// Every source that answered gave an empty value.
    Empty,
    /// The batch has no tenant (context, or a table keyed by the tenant), or its tenant has no
    /// tier in the tenants file.
    NoTenant,
    /// The header was not carried.
    NoHeader,
    /// The resource has no such attribute (as text).
    NoAttribute,
    /// The pattern did not match.
    NoMatch,
    /// The table has no such key.
    NotInTable,
}

impl Miss {
    pub const ALL: [Miss; 6] = [
        Miss::Empty,
        Miss::NoTenant,
        Miss::NoHeader,
        Miss::NoAttribute,
        Miss::NoMatch,
        Miss::NotInTable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Miss::Empty => "empty",
            Miss::NoTenant => "no_tenant",
            Miss::NoHeader => "no_header",
            Miss::NoAttribute => "no_attribute",
            Miss::NoMatch => "no_match",
            Miss::NotInTable => "not_in_table",
        }
    }
}

/// What a lookup sees: the batch's context, the resource's attributes, and the tenant label's
/// value for this resource once the tenant rule has run.
pub struct Inputs<'a> {
    pub context: &'a Context,
    pub attributes: &'a [KeyValue],
    pub tenant: Option<&'a str>,
}

impl Rule {
    /// The value of the first source that gives a non-empty one, or why the last gave none.
    pub fn resolve(&self, inp: &Inputs<'_>) -> Result<Arc<str>, Miss> {
        let mut miss = Miss::Empty;
        for s in &self.sources {
            match s.lookup(inp) {
                Ok(v) if !v.is_empty() => return Ok(v),
                Ok(_) => {}
                Err(m) => miss = m,
            }
        }
        Err(miss)
    }
}

impl Source {
    fn lookup(&self, inp: &Inputs<'_>) -> Result<Arc<str>, Miss> {
        match self {
            Source::Context => inp.context.tenant.clone().ok_or(Miss::NoTenant),
            Source::Tier => inp
                .context
                .tenant_info
                .as_ref()
                .and_then(|i| i.sla_tier.clone())
                .ok_or(Miss::NoTenant),
            Source::Header(h) => inp.context.metadata(h).map(Arc::from).ok_or(Miss::NoHeader),
            Source::Attribute(a) => attribute(inp.attributes, a)
                .map(|v| Arc::from(v.as_ref()))
                .ok_or(Miss::NoAttribute),
            Source::Capture(a, re) => {
                let v = attribute(inp.attributes, a).ok_or(Miss::NoAttribute)?;
                let c = re
                    .captures(&v)
                    .and_then(|c| c.get(1))
                    .ok_or(Miss::NoMatch)?;
                Ok(Arc::from(c.as_str()))
            }
            Source::Table(by, table) => {
                let key = match by {
                    TableKey::Tenant => inp
                        .tenant
                        .map(Cow::Borrowed)
                        .or_else(|| inp.context.tenant.as_deref().map(Cow::Borrowed))
                        .ok_or(Miss::NoTenant)?,
                    TableKey::Attribute(a) => {
                        attribute(inp.attributes, a).ok_or(Miss::NoAttribute)?
                    }
                };
                table.get(&key).ok_or(Miss::NotInTable)
            }
            Source::Default(d) => Ok(d.clone()),
        }
    }

    /// The table file this source watches, if any.
    pub fn table(&self) -> Option<&Arc<Table>> {
        match self {
            Source::Table(_, t) => Some(t),
            _ => None,
        }
    }
}

/// A resource attribute as text: strings as they are, integers, booleans and doubles written out;
/// other kinds (arrays, maps, bytes) count as absent.
pub fn attribute<'a>(attrs: &'a [KeyValue], key: &str) -> Option<Cow<'a, str>> {
    let v = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(Cow::Borrowed(s.as_str())),
        any_value::Value::IntValue(i) => Some(Cow::Owned(i.to_string())),
        any_value::Value::BoolValue(b) => Some(Cow::Owned(b.to_string())),
        any_value::Value::DoubleValue(d) => Some(Cow::Owned(d.to_string())),
        _ => None,
    }
}
