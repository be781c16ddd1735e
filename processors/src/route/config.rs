use serde::Deserialize;
use sluice_core::component::{ComponentId, Validate};
use sluice_core::config::{DeError, LoadContext, Located, Node, Pos};
use std::collections::BTreeMap;
use std::sync::Arc;

/// `processors.route`: chooses the exporters of each batch (or of each resource or data point) by
/// tenant, resource attribute or point label; the first matching route wins.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The routes, tried in order (at least one).
    #[serde(default)]
    pub routes: Vec<RouteEntry>,
    /// The exporters of data no route matches; when left out, such data is dropped and counted
    /// (reason `no_route`).
    #[serde(default)]
    pub default: Option<Located<Vec<Located<String>>>>,
}

/// One route: what it matches (every condition set must hold) and where matching data goes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    /// The route's name in telemetry (default: its position in `routes`, from 0).
    #[serde(default)]
    pub name: Option<Located<String>>,
    /// The batch's tenant is one of these.
    #[serde(default)]
    pub tenants: Option<Located<Vec<String>>>,
    /// The resource has each of these attributes with exactly this value.
    #[serde(default)]
    pub attributes: Option<Located<BTreeMap<String, String>>>,
    /// The data point has each of these attributes (labels) with exactly this value.
    #[serde(default)]
    pub labels: Option<Located<BTreeMap<String, String>>>,
    /// Where matching data goes (at least one exporter of the pipeline).
    pub exporters: Located<Vec<Located<String>>>,
}

/// A route, checked.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub tenants: Option<Vec<String>>,
    pub attributes: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    /// The exporter ids, as the fanout compares them.
    pub exporters: Arc<[String]>,
}

/// Everything the processor runs on, checked.
#[derive(Debug)]
pub struct Compiled {
    pub routes: Vec<Route>,
    pub default: Option<Arc<[String]>>,
}

impl RouteConfig {
    /// Checks the config and builds the routes.
    pub fn compile(&self) -> Result<Compiled, Vec<DeError>> {
        let mut errs = Vec::new();
        if self.routes.is_empty() {
            errs.push(DeError::new(
                Pos::default(),
                "routes: at least one route is needed",
            ));
        }
        let mut names = BTreeMap::new();
        let mut routes = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let name = match &r.name {
                Some(n) if n.trim().is_empty() => {
                    errs.push(DeError::new(n.pos, format!("routes[{i}].name is empty")));
                    n.value.clone()
                }
                Some(n) => n.value.clone(),
                None => i.to_string(),
            };
            if name == "default" {
                errs.push(DeError::new(
                    r.name.as_ref().map_or(Pos::default(), |n| n.pos),
                    format!("routes[{i}].name: `default` names the default route"),
                ));
            }
            if let Some(prev) = names.insert(name.clone(), i) {
                errs.push(DeError::new(
                    r.name.as_ref().map_or(Pos::default(), |n| n.pos),
                    format!("routes[{i}].name `{name}` is also the name of routes[{prev}]"),
                ));
            }
            let empty_map = |m: &Option<Located<BTreeMap<String, String>>>| {
                m.as_ref().is_some_and(|m| m.is_empty())
            };
            if r.tenants.as_ref().is_some_and(|t| t.is_empty())
                || empty_map(&r.attributes)
                || empty_map(&r.labels)
            {
                errs.push(DeError::new(
                    r.exporters.pos,
                    format!(
                        "routes[{i}]: an empty `tenants`, `attributes` or `labels` matches \
                         nothing; leave it out"
                    ),
                ));
            }
            if r.tenants.is_none() && r.attributes.is_none() && r.labels.is_none() {
                errs.push(DeError::new(
                    r.exporters.pos,
                    format!(
                        "routes[{i}]: set at least one of `tenants`, `attributes`, `labels` \
                         (for everything else use `default`)"
                    ),
                ));
            }
            let pairs = |m: &Option<Located<BTreeMap<String, String>>>| {
                m.iter()
                    .flat_map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())))
                    .collect()
            };
            routes.push(Route {
                name,
                tenants: r.tenants.as_ref().map(|t| t.value.clone()),
                attributes: pairs(&r.attributes),
                labels: pairs(&r.labels),
                exporters: exporters(&format!("routes[{i}].exporters"), &r.exporters, &mut errs),
            });
        }
        let default = self
            .default
            .as_ref()
            .map(|d| exporters("default", d, &mut errs));
        if errs.is_empty() {
            Ok(Compiled { routes, default })
        } else {
            Err(errs)
        }
    }

    /// Every exporter a route or the default names, with its position.
    pub fn targets(&self) -> Vec<Located<ComponentId>> {
        self.routes
            .iter()
            .map(|r| &r.exporters)
            .chain(self.default.as_ref())
            .flat_map(|list| list.iter())
            .filter_map(|e| {
                ComponentId::parse(e).ok().map(|id| Located {
                    value: id,
                    pos: e.pos,
                })
            })
            .collect()
    }
}

/// Checks an exporter list and returns the ids as the fanout compares them (sorted, unique).
fn exporters(
    what: &str,
    list: &Located<Vec<Located<String>>>,
    errs: &mut Vec<DeError>,
) -> Arc<[String]> {
    if list.is_empty() {
        errs.push(DeError::new(
            list.pos,
            format!("{what}: name at least one exporter"),
        ));
    }
    let mut ids = Vec::new();
    for e in list.iter() {
        match ComponentId::parse(e) {
            Ok(id) => ids.push(id.to_string()),
            Err(m) => errs.push(DeError::new(e.pos, format!("{what}: {m}"))),
        }
    }
    ids.sort();
    ids.dedup();
    ids.into()
}

impl Validate for RouteConfig {
    fn validate(&self, node: &Node, _: &LoadContext) -> Vec<DeError> {
        match self.compile() {
            Ok(_) => Vec::new(),
            Err(errs) => errs
                .into_iter()
                .map(|mut e| {
                    if !e.pos.is_known() {
                        e.pos = node.pos;
                    }
                    e
                })
                .collect(),
        }
    }
}
