//! Where a run's objects live in a real cluster: every fixture namespace (`httpbin`) becomes a
//! namespace of the run (`mc-<run>-<mesh>-httpbin`), labelled so that the harness, the
//! sweeper and a human can tell it is meshcert's and which run made it. Nothing else in the
//! cluster is written.

use std::collections::BTreeMap;

use kube::core::{ApiResource, GroupVersionKind};
use meshcert_mesh::MeshError;
use meshcert_mesh::manifest::{DEFAULT_NAMESPACE, Manifest, ManifestSet};
use serde_json::Value;

/// Label naming the run that created a namespace; the only namespaces the driver deletes.
pub const RUN_LABEL: &str = "meshcert.dev/run";
/// Annotation: Unix seconds after which a namespace belongs to a run that cannot be alive.
pub const EXPIRES_ANNOTATION: &str = "meshcert.dev/expires";
/// Annotation: the fixture namespace this one stands for.
pub const FIXTURE_ANNOTATION: &str = "meshcert.dev/fixture-namespace";
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "meshcert");
pub const AMBIENT: (&str, &str) = ("istio.io/dataplane-mode", "ambient");
/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "meshcert";

/// The namespaces of one mesh of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunNamespaces {
    pub run: String,
    pub mesh: u32,
    /// Unix seconds; see [`EXPIRES_ANNOTATION`].
    pub expires_at: u64,
}

impl RunNamespaces {
    /// `mc-<run>-<mesh>-<fixture>`, cut to Kubernetes' 63 characters.
    pub fn map(&self, fixture: &str) -> String {
        let mut name = format!("mc-{}-{}-{fixture}", self.run, self.mesh);
        name.truncate(63);
        name.trim_end_matches('-').to_string()
    }

    /// The fixture namespace a run namespace stands for, if it is one of this mesh's.
    pub fn unmap<'a>(&self, namespace: &'a str) -> Option<&'a str> {
        namespace.strip_prefix(&format!("mc-{}-{}-", self.run, self.mesh))
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (RUN_LABEL.to_string(), self.run.clone()),
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            (AMBIENT.0.to_string(), AMBIENT.1.to_string()),
        ])
    }

    /// The URL a step names (`http://in-ambient.httpbin:8000/x`) with a fixture namespace in
    /// its host rewritten to the run's; short names resolve in the client's namespace as is.
    pub fn rewrite_url(&self, url: &str, fixtures: &[String]) -> String {
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.to_string();
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let mut labels: Vec<String> = host.split('.').map(str::to_string).collect();
        if labels.len() >= 2 && fixtures.contains(&labels[1]) {
            labels[1] = self.map(&labels[1]);
        }
        let host = labels.join(".");
        match port {
            Some(port) => format!("{scheme}://{host}:{port}{path}"),
            None => format!("{scheme}://{host}{path}"),
        }
    }
}

/// One object ready for server-side apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub resource: ApiResource,
    pub namespace: Option<String>,
    pub name: String,
    pub body: Value,
}

impl Applied {
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.resource.kind, self.name),
            None => format!("{} {}", self.resource.kind, self.name),
        }
    }
}

fn resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The manifests as the cluster gets them: namespaces renamed and labelled as the run's,
/// every object moved into them. Nodes are refused unless `label_nodes`: a run never changes
/// the cluster's nodes without permission.
pub fn localize(
    manifests: &ManifestSet,
    ns: &RunNamespaces,
    label_nodes: bool,
) -> Result<Vec<Applied>, MeshError> {
    let mut out = Vec::new();
    for object in &manifests.objects {
        let applied = match object {
            Manifest::Namespace(n) => localize_namespace(object, n, ns)?,
            Manifest::Node(_) if !label_nodes => {
                return Err(MeshError::Unsupported {
                    what: format!("{} (labelling a cluster node)", object.describe()),
                    reason: "meshcert changes no node of a real cluster unless allowed \
                             (--allow-node-labels, with the meshcert-node-labeller role)"
                        .into(),
                });
            }
            Manifest::Node(n) => Applied {
                resource: resource("v1", "Node", "nodes"),
                namespace: None,
                name: object.name().to_string(),
                // Only the labels: a partial apply owns just the fields it sends.
                body: serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": object.name(), "labels": n.metadata.labels},
                }),
            },
            _ => localize_namespaced(object, ns)?,
        };
        out.push(applied);
    }
    // Namespaces first, as kubectl orders an apply.
    out.sort_by_key(|a| a.namespace.is_some());
    Ok(out)
}

fn to_json(object: &Manifest, v: Result<Value, serde_json::Error>) -> Result<Value, MeshError> {
    v.map_err(|e| MeshError::InvalidRequest(format!("{}: {e}", object.describe())))
}

/// A fixture's namespace renamed as the run's, labelled and annotated with its expiry.
fn localize_namespace(
    object: &Manifest,
    n: &k8s_openapi::api::core::v1::Namespace,
    ns: &RunNamespaces,
) -> Result<Applied, MeshError> {
    let mut n = n.clone();
    let fixture = object.name().to_string();
    n.metadata.name = Some(ns.map(&fixture));
    n.metadata
        .labels
        .get_or_insert_with(Default::default)
        .extend(ns.labels());
    let annotations = n.metadata.annotations.get_or_insert_with(Default::default);
    annotations.insert(EXPIRES_ANNOTATION.into(), ns.expires_at.to_string());
    annotations.insert(FIXTURE_ANNOTATION.into(), fixture);
    Ok(Applied {
        resource: resource("v1", "Namespace", "namespaces"),
        namespace: None,
        name: ns.map(object.name()),
        body: to_json(object, serde_json::to_value(&n))?,
    })
}

/// A namespaced object moved into the run's namespace of its fixture namespace.
fn localize_namespaced(object: &Manifest, ns: &RunNamespaces) -> Result<Applied, MeshError> {
    const ISTIO: &str = "networking.istio.io/v1";
    let (api_version, plural, value) = match object {
        Manifest::ServiceAccount(o) => ("v1", "serviceaccounts", serde_json::to_value(o)),
        Manifest::Service(o) => ("v1", "services", serde_json::to_value(o)),
        Manifest::Deployment(o) => ("apps/v1", "deployments", serde_json::to_value(o)),
        Manifest::ServiceEntry(o) => (ISTIO, "serviceentries", serde_json::to_value(o)),
        Manifest::WorkloadEntry(o) => (ISTIO, "workloadentries", serde_json::to_value(o)),
        Manifest::DestinationRule(o) => (ISTIO, "destinationrules", serde_json::to_value(o)),
        Manifest::Namespace(_) | Manifest::Node(_) => unreachable!("cluster-scoped"),
    };
    let namespace = ns.map(object.namespace().unwrap_or(DEFAULT_NAMESPACE));
    let kind = object.kind();
    let mut body = to_json(object, value)?;
    body["apiVersion"] = api_version.into();
    body["kind"] = kind.into();
    body["metadata"]["namespace"] = namespace.clone().into();
    Ok(Applied {
        resource: resource(api_version, kind, plural),
        namespace: Some(namespace),
        name: object.name().to_string(),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn ns() -> RunNamespaces {
        RunNamespaces {
            run: "k3x9aa".into(),
            mesh: 4,
            expires_at: 1_800_000_000,
        }
    }

    #[test]
    fn namespaces_map_and_unmap_and_fit_63_characters() {
        assert_eq!(ns().map("httpbin"), "mc-k3x9aa-4-httpbin");
        assert_eq!(ns().unmap("mc-k3x9aa-4-httpbin"), Some("httpbin"));
        assert_eq!(ns().unmap("httpbin"), None);
        let long = ns().map(&"x".repeat(80));
        assert_eq!(long.len(), 63);
    }

    #[test]
    fn urls_with_a_fixture_namespace_are_rewritten_short_names_are_not() {
        let fixtures = vec!["httpbin".to_string()];
        let n = ns();
        assert_eq!(
            n.rewrite_url("http://in-ambient:8000/hostname", &fixtures),
            "http://in-ambient:8000/hostname"
        );
        assert_eq!(
            n.rewrite_url("http://in-ambient.httpbin:8000/hostname", &fixtures),
            "http://in-ambient.mc-k3x9aa-4-httpbin:8000/hostname"
        );
        assert_eq!(
            n.rewrite_url(
                "http://in-ambient.httpbin.svc.cluster.local/hostname",
                &fixtures
            ),
            "http://in-ambient.mc-k3x9aa-4-httpbin.svc.cluster.local/hostname"
        );
        assert_eq!(
            n.rewrite_url("http://example.com/x", &fixtures),
            "http://example.com/x"
        );
    }

    #[test]
    fn fixtures_become_run_objects_namespaces_first() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
        let set = ManifestSet::load_all([
            root.join("client-in-ambient.yaml"),
            root.join("in-ambient.yaml"),
        ])
        .unwrap();
        let applied = localize(&set, &ns(), false).unwrap();
        assert_eq!(applied[0].describe(), "Namespace mc-k3x9aa-4-httpbin");
        let labels = &applied[0].body["metadata"]["labels"];
        assert_eq!(labels[RUN_LABEL], "k3x9aa");
        assert_eq!(labels["istio.io/dataplane-mode"], "ambient");
        assert_eq!(
            applied[0].body["metadata"]["annotations"][EXPIRES_ANNOTATION],
            "1800000000"
        );
        for a in &applied[1..] {
            assert_eq!(a.namespace.as_deref(), Some("mc-k3x9aa-4-httpbin"), "{a:?}");
            assert_eq!(a.body["metadata"]["namespace"], "mc-k3x9aa-4-httpbin");
            assert!(a.body["apiVersion"].is_string() && a.body["kind"].is_string());
        }
        let deployment = applied
            .iter()
            .find(|a| a.describe() == "Deployment mc-k3x9aa-4-httpbin/in-ambient")
            .expect("the backend deployment");
        assert_eq!(deployment.resource.plural, "deployments");
        assert_eq!(deployment.resource.group, "apps");
    }

    #[test]
    fn nodes_are_refused_unless_allowed_and_then_only_labelled() {
        let text = "apiVersion: v1\nkind: Node\nmetadata:\n  name: worker\n  labels:\n    topology.kubernetes.io/zone: z1\n";
        let set = ManifestSet::parse(text, Path::new("nodes.yaml")).unwrap();
        let err = localize(&set, &ns(), false).unwrap_err();
        assert!(matches!(err, MeshError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("--allow-node-labels"), "{err}");
        let applied = localize(&set, &ns(), true).unwrap();
        assert_eq!(
            applied[0].body,
            serde_json::json!({"apiVersion":"v1","kind":"Node","metadata":{"name":"worker","labels":{"topology.kubernetes.io/zone":"z1"}}})
        );
    }
}
