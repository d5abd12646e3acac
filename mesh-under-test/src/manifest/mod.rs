//! Kubernetes manifests (fixtures) parsed into k8s-openapi types.
//!
//! A manifest file is multi-document YAML, as `kubectl apply -f` takes it. Each document is
//! dispatched on `apiVersion` + `kind`; only the kinds the control-plane translation reads are
//! accepted, so a typo in a fixture fails loudly instead of being silently ignored. Errors name
//! the file, the line, the object and the field, so a fixture author can fix them directly.
//! Istio's ServiceEntry, WorkloadEntry and DestinationRule are typed in
//! `meshcert_control_plane::istio`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_saphyr::{SnippetMode, Spanned, UserMessageFormatter};

use crate::MeshError;
use meshcert_control_plane::istio::{self, DestinationRule, ServiceEntry, WorkloadEntry};
use strict::{Located, erased, first_unknown, key_path_at};

mod strict;

/// One object of a manifest file.
// Boxing the large variants would change the pinned shape for no gain: a run holds a handful.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    Service(Service),
    Deployment(Deployment),
    Node(Node),
    ServiceEntry(ServiceEntry),
    WorkloadEntry(WorkloadEntry),
    DestinationRule(DestinationRule),
}

/// The objects of one or more manifest files, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManifestSet {
    pub objects: Vec<Manifest>,
}

/// The namespace Kubernetes gives a namespaced object that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// `namespace/name` of a Deployment object, its namespace defaulted as the API server does.
pub fn deployment_ref(deployment: &Deployment) -> crate::DeploymentRef {
    crate::DeploymentRef::new(
        deployment
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
        deployment.metadata.name.clone().unwrap_or_default(),
    )
}

/// Whether a Deployment is a client: no container declares a port (the guide's curl pod).
pub fn is_client(deployment: &Deployment) -> bool {
    !deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .is_some_and(|p| {
            p.containers
                .iter()
                .any(|c| c.ports.as_ref().is_some_and(|p| !p.is_empty()))
        })
}

/// The kinds meshcert reads, as `(apiVersions, kind, namespaced)`.
const SUPPORTED: &[(&[&str], &str, bool)] = &[
    (&["v1"], "Namespace", false),
    (&["v1"], "ServiceAccount", true),
    (&["v1"], "Service", true),
    (&["v1"], "Node", false),
    (&["apps/v1"], "Deployment", true),
    (&istio::API_VERSIONS, "ServiceEntry", true),
    (&istio::API_VERSIONS, "WorkloadEntry", true),
    (&istio::API_VERSIONS, "DestinationRule", true),
];

impl Manifest {
    /// The object's `kind`, e.g. `Deployment`.
    pub fn kind(&self) -> &'static str {
        match self {
            Manifest::Namespace(_) => "Namespace",
            Manifest::ServiceAccount(_) => "ServiceAccount",
            Manifest::Service(_) => "Service",
            Manifest::Deployment(_) => "Deployment",
            Manifest::Node(_) => "Node",
            Manifest::ServiceEntry(_) => "ServiceEntry",
            Manifest::WorkloadEntry(_) => "WorkloadEntry",
            Manifest::DestinationRule(_) => "DestinationRule",
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Manifest::Namespace(o) => &o.metadata,
            Manifest::ServiceAccount(o) => &o.metadata,
            Manifest::Service(o) => &o.metadata,
            Manifest::Deployment(o) => &o.metadata,
            Manifest::Node(o) => &o.metadata,
            Manifest::ServiceEntry(o) => &o.metadata,
            Manifest::WorkloadEntry(o) => &o.metadata,
            Manifest::DestinationRule(o) => &o.metadata,
        }
    }

    /// `metadata.name`; parsing guarantees it is present.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// `metadata.namespace` of a namespaced object (parsing fills in `default`); `None` for
    /// cluster-scoped kinds.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }

    /// `Kind namespace/name` or `Kind name`, as messages name objects.
    pub fn describe(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{} {ns}/{}", self.kind(), self.name()),
            None => format!("{} {}", self.kind(), self.name()),
        }
    }

    fn key(&self) -> (&'static str, String, String) {
        (
            self.kind(),
            self.namespace().unwrap_or_default().to_string(),
            self.name().to_string(),
        )
    }
}

impl ManifestSet {
    /// Reads and parses one manifest file.
    pub fn load(path: &Path) -> Result<Self, MeshError> {
        let text = std::fs::read_to_string(path).map_err(MeshError::io(format!(
            "cannot read manifest {} (check the path; fixtures live in fixtures/)",
            path.display()
        )))?;
        Self::parse(&text, path)
    }

    /// Reads several files into one set, in the order given. An object defined in two files
    /// is refused, since which definition wins would depend on apply order.
    pub fn load_all<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Result<Self, MeshError> {
        let mut set = ManifestSet::default();
        let mut origin: BTreeMap<(&'static str, String, String), PathBuf> = BTreeMap::new();
        for path in paths {
            let path = path.as_ref();
            let loaded = Self::load(path)?;
            for object in loaded.objects {
                if let Some(first) = origin.get(&object.key()) {
                    return Err(MeshError::Manifest {
                        file: path.to_path_buf(),
                        message: format!(
                            "{} is also defined in {}: keep one definition",
                            object.describe(),
                            first.display()
                        ),
                    });
                }
                origin.insert(object.key(), path.to_path_buf());
                set.objects.push(object);
            }
        }
        Ok(set)
    }

    /// Parses manifest text; `origin` names the text in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, MeshError> {
        let fail = |message: String| MeshError::Manifest {
            file: origin.to_path_buf(),
            message,
        };

        // Syntax first, over the whole text, so that YAML errors carry exact file lines even
        // where the document splitting below would not see them.
        serde_saphyr::from_multiple::<serde::de::IgnoredAny>(text)
            .map_err(|e| fail(format!("not valid YAML: {}", render(&e, 0))))?;

        let mut set = ManifestSet::default();
        let mut seen: BTreeMap<(&'static str, String, String), u64> = BTreeMap::new();
        for document in split_documents(text) {
            let Some((object, line)) = parse_document(&document).map_err(fail)? else {
                continue;
            };
            if let Some(first) = seen.get(&object.key()) {
                return Err(fail(format!(
                    "document at line {line}: {} is already defined by the document at line \
                     {first}: keep one definition",
                    object.describe()
                )));
            }
            seen.insert(object.key(), line);
            set.objects.push(object);
        }
        Ok(set)
    }

    /// Adds another set's objects after this one's.
    pub fn extend(&mut self, other: ManifestSet) {
        self.objects.extend(other.objects);
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        self.objects.iter().filter_map(|o| match o {
            Manifest::Namespace(n) => Some(n),
            _ => None,
        })
    }

    pub fn service_accounts(&self) -> impl Iterator<Item = &ServiceAccount> {
        self.objects.iter().filter_map(|o| match o {
            Manifest::ServiceAccount(s) => Some(s),
            _ => None,
        })
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.objects.iter().filter_map(|o| match o {
            Manifest::Service(s) => Some(s),
            _ => None,
        })
    }

    pub fn deployments(&self) -> impl Iterator<Item = &Deployment> {
        self.objects.iter().filter_map(|o| match o {
            Manifest::Deployment(d) => Some(d),
            _ => None,
        })
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.objects.iter().filter_map(|o| match o {
            Manifest::Node(n) => Some(n),
            _ => None,
        })
    }

    pub fn service_entries(&self) -> impl Iterator<Item = &ServiceEntry> {
        self.objects.iter().filter_map(|o| match o {
            Manifest::ServiceEntry(s) => Some(s),
            _ => None,
        })
    }

    pub fn workload_entries(&self) -> impl Iterator<Item = &WorkloadEntry> {
        self.objects.iter().filter_map(|o| match o {
            Manifest::WorkloadEntry(w) => Some(w),
            _ => None,
        })
    }

    pub fn destination_rules(&self) -> impl Iterator<Item = &DestinationRule> {
        self.objects.iter().filter_map(|o| match o {
            Manifest::DestinationRule(d) => Some(d),
            _ => None,
        })
    }

    pub fn find_service_entry(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.service_entries()
            .find(|s| is(&s.metadata, namespace, name))
    }

    pub fn find_workload_entry(&self, namespace: &str, name: &str) -> Option<&WorkloadEntry> {
        self.workload_entries()
            .find(|w| is(&w.metadata, namespace, name))
    }

    pub fn find_destination_rule(&self, namespace: &str, name: &str) -> Option<&DestinationRule> {
        self.destination_rules()
            .find(|d| is(&d.metadata, namespace, name))
    }

    pub fn find_namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces()
            .find(|n| n.metadata.name.as_deref() == Some(name))
    }

    pub fn find_service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services().find(|s| is(&s.metadata, namespace, name))
    }

    pub fn find_deployment(&self, namespace: &str, name: &str) -> Option<&Deployment> {
        self.deployments()
            .find(|d| is(&d.metadata, namespace, name))
    }

    pub fn find_service_account(&self, namespace: &str, name: &str) -> Option<&ServiceAccount> {
        self.service_accounts()
            .find(|s| is(&s.metadata, namespace, name))
    }

    pub fn find_node(&self, name: &str) -> Option<&Node> {
        self.nodes()
            .find(|n| n.metadata.name.as_deref() == Some(name))
    }
}

fn is(meta: &ObjectMeta, namespace: &str, name: &str) -> bool {
    meta.namespace.as_deref() == Some(namespace) && meta.name.as_deref() == Some(name)
}

/// Renders a serde-saphyr error as one line, its location shifted to file lines.
fn render(error: &serde_saphyr::Error, line_offset: u64) -> String {
    error.render_with_options(serde_saphyr::render_options! {
        formatter: &UserMessageFormatter,
        snippets: SnippetMode::Off,
        line_offset: line_offset,
    })
}

/// One YAML document of a file, with where it starts.
struct Document {
    /// The document's text; its first line is line `first_line` of the file.
    text: String,
    first_line: u64,
    /// Line of the first content (not blank, comment or marker) line: where messages point.
    start_line: u64,
}

/// Splits at document markers in column 0. The whole text has already been checked to be
/// valid YAML, and in valid YAML a `---` or `...` in column 0 can only be a marker (block
/// scalar content is indented), so no YAML parser is needed here.
fn split_documents(text: &str) -> Vec<Document> {
    let mut documents = Vec::new();
    let mut current = Document {
        text: String::new(),
        first_line: 1,
        start_line: 0,
    };
    for (index, line) in text.lines().enumerate() {
        let number = index as u64 + 1;
        let trimmed = line.trim_end();
        let starts =
            trimmed == "---" || trimmed.starts_with("--- ") || trimmed.starts_with("---\t");
        let ends = trimmed == "..." || trimmed.starts_with("... ");
        if starts || ends {
            let next = Document {
                text: String::new(),
                first_line: number,
                start_line: 0,
            };
            documents.push(std::mem::replace(&mut current, next));
        }
        if ends || line.starts_with('%') {
            // Directives and end markers carry no content; a blank line keeps numbering.
            current.text.push('\n');
            continue;
        }
        let content = trimmed.strip_prefix("---").unwrap_or(trimmed).trim();
        if current.start_line == 0 && !content.is_empty() && !content.starts_with('#') {
            current.start_line = number;
        }
        current.text.push_str(line);
        current.text.push('\n');
    }
    documents.push(current);
    documents
        .into_iter()
        .filter(|d| d.start_line != 0)
        .collect()
}

/// What every object has, read before the kind is known.
#[derive(Deserialize)]
struct Header {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<Spanned<HeaderMeta>>,
}

#[derive(Deserialize)]
struct HeaderMeta {
    name: Option<String>,
    namespace: Option<String>,
}

/// Parses one document into an object and the line it starts at; `None` for a null document.
fn parse_document(doc: &Document) -> Result<Option<(Manifest, u64)>, String> {
    let offset = doc.first_line - 1;
    let line = doc.start_line;
    let header: Option<Header> = serde_saphyr::from_str(&doc.text).map_err(|e| {
        format!(
            "document at line {line}: not a Kubernetes object (needs a mapping with apiVersion, \
             kind and metadata): {}",
            render(&e, offset)
        )
    })?;
    let Some(header) = header else {
        return Ok(None);
    };

    let (kind, namespaced) = supported_kind(&header, line)?;
    let (name, namespace, meta_line) = match header.metadata {
        Some(meta) => (
            meta.value.name,
            meta.value.namespace,
            meta.referenced.line() + offset,
        ),
        None => (None, None, line),
    };
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Err(format!(
            "document at line {line}: {kind}: line {meta_line}: field `metadata.name` is missing: \
             every object needs a name"
        ));
    };
    let what = match namespaced {
        true => format!(
            "{kind} {}/{name}",
            namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
        ),
        false => format!("{kind} {name}"),
    };
    let mut object = typed_object(doc, &kind, &what)?;

    if namespaced && namespace.is_none() {
        set_namespace(&mut object, DEFAULT_NAMESPACE);
    }
    if !namespaced && namespace.is_some() {
        return Err(format!(
            "document at line {line}: {what}: line {meta_line}: field `metadata.namespace` is set, \
             but a {kind} is cluster-scoped: remove it"
        ));
    }
    check(&object).map_err(|m| format!("document at line {line}: {what}: {m}"))?;
    Ok(Some((object, line)))
}

/// The object's kind, checked against what meshcert reads, and whether it is namespaced.
fn supported_kind(header: &Header, line: u64) -> Result<(String, bool), String> {
    let kind = header
        .kind
        .clone()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            format!("document at line {line}: field `kind` is missing: every object needs a kind")
        })?;
    let api_version = header
        .api_version
        .clone()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("document at line {line}: {kind}: field `apiVersion` is missing"))?;
    let Some(&(_, _, namespaced)) = SUPPORTED
        .iter()
        .find(|(v, k, _)| v.contains(&api_version.as_str()) && *k == kind)
    else {
        let known: Vec<String> = SUPPORTED
            .iter()
            .map(|(versions, k, _)| match versions {
                [only] => format!("{only} {k}"),
                [first, rest @ ..] => {
                    let rest: Vec<&str> = rest
                        .iter()
                        .map(|v| v.rsplit('/').next().unwrap_or(v))
                        .collect();
                    format!("{first} {k} (also {})", rest.join(", "))
                }
                [] => unreachable!("every supported kind has a version"),
            })
            .collect();
        return Err(format!(
            "document at line {line}: kind `{kind}` of apiVersion `{api_version}` is not \
             supported; meshcert reads {}",
            known.join(", ")
        ));
    };

    Ok((kind, namespaced))
}

/// The document read as the typed object its kind names, strictly: a field the type does not
/// know is refused with its line.
fn typed_object(doc: &Document, kind: &str, what: &str) -> Result<Manifest, String> {
    let offset = doc.first_line - 1;
    let line = doc.start_line;
    let typed_error = |e: serde_saphyr::Error| {
        let field = e
            .location()
            .and_then(|l| key_path_at(&doc.text, l.line()))
            .map(|path| format!("field `{path}`: "))
            .unwrap_or_default();
        format!(
            "document at line {line}: {what}: {field}{}",
            render(&e, offset)
        )
    };

    // k8s-openapi's types ignore fields they do not know: read them strictly, so a misspelt
    // field (`tagetPort`) is refused here instead of silently changing what is deployed.
    let strict = |object: &dyn erased::Serialize| -> Result<(), String> {
        let located: Located = serde_saphyr::from_str(&doc.text).map_err(typed_error)?;
        let typed = object.to_json();
        match first_unknown(&located, &typed, "") {
            None => Ok(()),
            Some((field, key_line)) => Err(format!(
                "document at line {line}: {what}: line {}: field `{field}` is not a field of \
                 {kind}: check its spelling and indentation",
                key_line + offset
            )),
        }
    };
    let object = match kind {
        "Namespace" => {
            let o: Namespace = serde_saphyr::from_str(&doc.text).map_err(typed_error)?;
            strict(&o)?;
            Manifest::Namespace(o)
        }
        "ServiceAccount" => {
            let o: ServiceAccount = serde_saphyr::from_str(&doc.text).map_err(typed_error)?;
            strict(&o)?;
            Manifest::ServiceAccount(o)
        }
        "Service" => {
            let o: Service = serde_saphyr::from_str(&doc.text).map_err(typed_error)?;
            strict(&o)?;
            Manifest::Service(o)
        }
        "Node" => {
            let o: Node = serde_saphyr::from_str(&doc.text).map_err(typed_error)?;
            strict(&o)?;
            Manifest::Node(o)
        }
        "Deployment" => {
            let o: Deployment = serde_saphyr::from_str(&doc.text).map_err(typed_error)?;
            strict(&o)?;
            Manifest::Deployment(o)
        }
        // Istio's kinds are typed here with `deny_unknown_fields`.
        "ServiceEntry" => {
            Manifest::ServiceEntry(serde_saphyr::from_str(&doc.text).map_err(typed_error)?)
        }
        "WorkloadEntry" => {
            Manifest::WorkloadEntry(serde_saphyr::from_str(&doc.text).map_err(typed_error)?)
        }
        "DestinationRule" => {
            Manifest::DestinationRule(serde_saphyr::from_str(&doc.text).map_err(typed_error)?)
        }
        other => unreachable!("kind {other} is in SUPPORTED but not dispatched"),
    };
    Ok(object)
}

fn set_namespace(object: &mut Manifest, namespace: &str) {
    let meta = match object {
        Manifest::Namespace(o) => &mut o.metadata,
        Manifest::ServiceAccount(o) => &mut o.metadata,
        Manifest::Service(o) => &mut o.metadata,
        Manifest::Deployment(o) => &mut o.metadata,
        Manifest::Node(o) => &mut o.metadata,
        Manifest::ServiceEntry(o) => &mut o.metadata,
        Manifest::WorkloadEntry(o) => &mut o.metadata,
        Manifest::DestinationRule(o) => &mut o.metadata,
    };
    meta.namespace = Some(namespace.to_string());
}

/// The rules the API server (and Istio's validation webhook) would enforce and the translation
/// relies on.
fn check(object: &Manifest) -> Result<(), String> {
    match object {
        Manifest::Service(service) => {
            let spec = service.spec.as_ref().ok_or("field `spec` is missing")?;
            for (i, port) in spec.ports.iter().flatten().enumerate() {
                if !(1..=65535).contains(&port.port) {
                    return Err(format!(
                        "field `spec.ports[{i}].port` is {}: it must be 1..65535",
                        port.port
                    ));
                }
            }
            Ok(())
        }
        Manifest::Deployment(deployment) => {
            let spec = deployment.spec.as_ref().ok_or("field `spec` is missing")?;
            if let Some(replicas) = spec.replicas
                && replicas < 0
            {
                return Err(format!(
                    "field `spec.replicas` is {replicas}: it must be >= 0"
                ));
            }
            let template_labels = spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            let selector = spec.selector.match_labels.clone().unwrap_or_default();
            if selector.is_empty() {
                return Err(
                    "field `spec.selector.matchLabels` is empty: select the pods by label \
                            (e.g. app: <name>)"
                        .into(),
                );
            }
            for (key, value) in &selector {
                if template_labels.get(key) != Some(value) {
                    return Err(format!(
                        "field `spec.selector.matchLabels` has {key}: {value}, which \
                         `spec.template.metadata.labels` lacks: the deployment would select \
                         none of its own pods"
                    ));
                }
            }
            let pod = spec
                .template
                .spec
                .as_ref()
                .ok_or("field `spec.template.spec` is missing")?;
            if pod.containers.is_empty() {
                return Err("field `spec.template.spec.containers` is empty".into());
            }
            for (i, container) in pod.containers.iter().enumerate() {
                let field = format!("spec.template.spec.containers[{i}]");
                if container.name.is_empty() {
                    return Err(format!("field `{field}.name` is missing"));
                }
                for (j, port) in container.ports.iter().flatten().enumerate() {
                    if !(1..=65535).contains(&port.container_port) {
                        return Err(format!(
                            "field `{field}.ports[{j}].containerPort` is {}: it must be 1..65535",
                            port.container_port
                        ));
                    }
                }
            }
            Ok(())
        }
        Manifest::ServiceEntry(entry) => entry.validate(),
        Manifest::WorkloadEntry(entry) => entry.validate(),
        Manifest::DestinationRule(rule) => rule.validate(),
        Manifest::Namespace(_) | Manifest::ServiceAccount(_) | Manifest::Node(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(name)
    }

    #[test]
    fn in_ambient_fixture_parses() {
        let set = ManifestSet::load(&fixture("in-ambient.yaml")).unwrap();
        let kinds: Vec<&str> = set.objects.iter().map(Manifest::kind).collect();
        assert_eq!(
            kinds,
            ["Namespace", "ServiceAccount", "Service", "Deployment"]
        );
        let ns = set.find_namespace("httpbin").unwrap();
        assert_eq!(
            ns.metadata
                .labels
                .as_ref()
                .unwrap()
                .get("istio.io/dataplane-mode")
                .map(String::as_str),
            Some("ambient")
        );
        let svc = set.find_service("httpbin", "in-ambient").unwrap();
        let port = &svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
        assert_eq!((port.port, port.name.as_deref()), (8000, Some("http")));
        let deploy = set.find_deployment("httpbin", "in-ambient").unwrap();
        let spec = deploy.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("in-ambient"));
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("docker.io/mccutchen/go-httpbin:v2.15.0")
        );
        assert_eq!(
            pod.containers[0].ports.as_ref().unwrap()[0].container_port,
            8080
        );
    }

    #[test]
    fn client_fixture_parses() {
        let set = ManifestSet::load(&fixture("client-in-ambient.yaml")).unwrap();
        let deploy = set.find_deployment("httpbin", "client-in-ambient").unwrap();
        let pod = deploy
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("curlimages/curl:8.11.1")
        );
        assert_eq!(
            pod.containers[0].command.as_deref(),
            Some(&["sleep".to_string(), "infinity".to_string()][..])
        );
        assert!(
            set.find_service_account("httpbin", "client-in-ambient")
                .is_some()
        );
    }

    #[test]
    fn load_all_concatenates_in_order_and_refuses_duplicates() {
        let set = ManifestSet::load_all([
            fixture("in-ambient.yaml"),
            fixture("client-in-ambient.yaml"),
        ])
        .unwrap();
        assert_eq!(set.deployments().count(), 2);
        assert_eq!(
            set.objects.last().unwrap().describe(),
            "Deployment httpbin/client-in-ambient"
        );

        let err = ManifestSet::load_all([fixture("in-ambient.yaml"), fixture("in-ambient.yaml")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Namespace httpbin is also defined in"),
            "{err}"
        );
    }

    #[test]
    fn service_entry_fixture_parses() {
        let set = ManifestSet::load(&fixture("service-entry.yaml")).unwrap();
        let se = set.find_service_entry("httpbin", "in-ambient-se").unwrap();
        assert_eq!(se.spec.hosts, ["in-ambient.mesh.example"]);
        assert_eq!(se.spec.location, istio::Location::MeshInternal);
        assert_eq!(se.spec.resolution, istio::Resolution::Static);
        let port = &se.spec.ports[0];
        assert_eq!(
            (
                port.number,
                port.target_port,
                port.name.as_str(),
                port.protocol.as_deref()
            ),
            (80, Some(8080), "http", Some("TCP"))
        );
        assert_eq!(
            se.spec.workload_selector.as_ref().unwrap().labels["app"],
            "in-ambient"
        );
        assert!(se.spec.addresses.is_empty() && se.metadata.annotations.is_none());
    }

    #[test]
    fn destination_rule_fixture_parses() {
        let set = ManifestSet::load(&fixture("destination-rule.yaml")).unwrap();
        let dr = set.find_destination_rule("httpbin", "in-ambient").unwrap();
        assert_eq!(dr.spec.host, "in-ambient.httpbin.svc.cluster.local");
        let policy = dr.spec.traffic_policy.as_ref().unwrap();
        let lb = policy.load_balancer.as_ref().unwrap();
        assert_eq!(lb.simple, Some(istio::SimpleLb::Random));
        let locality = lb.locality_lb_setting.as_ref().unwrap();
        assert_eq!(locality.enabled, Some(true));
        assert_eq!(
            (
                locality.failover[0].from.as_str(),
                locality.failover[0].to.as_str()
            ),
            ("r1", "r2")
        );
        let od = policy.outlier_detection.as_ref().unwrap();
        assert_eq!(od.consecutive_5xx_errors, Some(1));
        assert_eq!(
            od.interval.as_ref().unwrap().duration,
            std::time::Duration::from_secs(1)
        );
        assert_eq!(
            od.base_ejection_time.as_ref().unwrap().duration,
            std::time::Duration::from_secs(30)
        );
        assert_eq!(od.max_ejection_percent, Some(100));
    }

    #[rstest]
    #[case("networking.istio.io/v1")]
    #[case("networking.istio.io/v1beta1")]
    #[case("networking.istio.io/v1alpha3")]
    fn istio_kinds_are_read_in_every_version(#[case] version: &str) {
        let text = ISTIO.replace("networking.istio.io/v1\n", &format!("{version}\n"));
        let set = ManifestSet::parse(&text, Path::new("i.yaml")).unwrap();
        let kinds: Vec<String> = set.objects.iter().map(Manifest::describe).collect();
        assert_eq!(
            kinds,
            [
                "ServiceEntry httpbin/se",
                "WorkloadEntry default/vm",
                "DestinationRule httpbin/dr"
            ]
        );
        let vm = set.find_workload_entry("default", "vm").unwrap();
        assert_eq!(vm.spec.ports["http"], 9080);
        assert_eq!(vm.spec.locality, "r1/z1");
    }

    const ISTIO: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: se
  namespace: httpbin
spec:
  hosts:
  - se.mesh.example
  ports:
  - number: 80
    name: http
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector:
    labels:
      app: vm
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: vm
spec:
  address: 10.244.9.9
  ports:
    http: 9080
  labels:
    app: vm
  locality: r1/z1
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: dr
  namespace: httpbin
spec:
  host: se.mesh.example
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        failoverPriority:
        - topology.kubernetes.io/region
    outlierDetection:
      interval: 10s
      maxEjectionPercent: 50
";

    /// Each bad input is ISTIO with one edit; the message names the object and the field.
    #[rstest]
    #[case::typo("  hosts:", "  hostz:", &["ServiceEntry httpbin/se", "field `spec.hostz`", "unknown field", "line 7"])]
    #[case::no_spec_traffic_distribution("  location: MESH_INTERNAL", "  trafficDistribution: PreferClose\n  location: MESH_INTERNAL", &["ServiceEntry httpbin/se", "`spec.trafficDistribution`", "unknown field"])]
    #[case::bad_location("MESH_INTERNAL", "MESH_INTERNL", &["ServiceEntry httpbin/se", "field `spec.location`", "MESH_INTERNL"])]
    #[case::bad_resolution("STATIC", "STATIK", &["field `spec.resolution`", "STATIK"])]
    #[case::no_hosts("  hosts:\n  - se.mesh.example\n", "  hosts: []\n", &["ServiceEntry httpbin/se", "`spec.hosts` is empty"])]
    #[case::bad_port("  - number: 80", "  - number: 0", &["ServiceEntry httpbin/se", "`spec.ports[0].number` is 0"])]
    #[case::bad_address("  location: MESH_INTERNAL", "  addresses: [not-an-ip]\n  location: MESH_INTERNAL", &["`spec.addresses[0]` is \"not-an-ip\""])]
    #[case::selector_and_endpoints("  workloadSelector:", "  endpoints:\n  - address: 10.244.9.9\n  workloadSelector:", &["`spec.workloadSelector` and `spec.endpoints` are both set"])]
    #[case::bad_locality("locality: r1/z1", "locality: r1/z1/s1/x", &["WorkloadEntry default/vm", "field `spec.locality` is \"r1/z1/s1/x\""])]
    #[case::bad_we_port("    http: 9080", "    http: 90800", &["WorkloadEntry default/vm", "`spec.ports.http` is 90800"])]
    #[case::bad_duration("interval: 10s", "interval: 10 sec", &["DestinationRule httpbin/dr", "field `spec.trafficPolicy.outlierDetection.interval`", "not a duration"])]
    #[case::bad_simple("ROUND_ROBIN", "ROUNDROBIN", &["field `spec.trafficPolicy.loadBalancer.simple`", "ROUNDROBIN"])]
    #[case::exclusive_locality("        failoverPriority:", "        failover:\n        - from: r1\n          to: r2\n        failoverPriority:", &["DestinationRule httpbin/dr", "`failover` and `failoverPriority`", "mutually exclusive"])]
    #[case::percent("maxEjectionPercent: 50", "maxEjectionPercent: 150", &["`spec.trafficPolicy.outlierDetection.maxEjectionPercent` is 150"])]
    #[case::simple_and_hash("      simple: ROUND_ROBIN", "      simple: ROUND_ROBIN\n      consistentHash:\n        useSourceIp: true", &["`spec.trafficPolicy.loadBalancer.simple` and `spec.trafficPolicy.loadBalancer.consistentHash`"])]
    #[case::dr_typo("  host: se", "  hosts: se", &["DestinationRule httpbin/dr", "field `spec.hosts`"])]
    #[case::wrong_version("apiVersion: networking.istio.io/v1\nkind: DestinationRule", "apiVersion: networking.istio.io/v2\nkind: DestinationRule", &["kind `DestinationRule` of apiVersion `networking.istio.io/v2`", "networking.istio.io/v1 DestinationRule (also v1beta1, v1alpha3)"])]
    fn bad_istio_inputs_are_named(#[case] from: &str, #[case] to: &str, #[case] expected: &[&str]) {
        assert!(ISTIO.contains(from), "test edit {from:?} does not apply");
        let text = ISTIO.replacen(from, to, 1);
        let message = ManifestSet::parse(&text, Path::new("bad.yaml"))
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("bad.yaml: "), "{message}");
        for fragment in expected {
            assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
        }
    }

    #[test]
    fn missing_file_says_which() {
        let err = ManifestSet::load(Path::new("/nonexistent/x.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/x.yaml"), "{err}");
    }

    #[rstest]
    #[case::top(1, Some("apiVersion"))]
    #[case::nested(12, Some("spec.replicas"))]
    #[case::first_key_of_item(22, Some("spec.template.spec.containers[].name"))]
    #[case::later_key_of_item(23, Some("spec.template.spec.containers[].image"))]
    #[case::item_in_item(25, Some("spec.template.spec.containers[].ports[].containerPort"))]
    #[case::not_a_key(0, None)]
    fn key_paths(#[case] line: u64, #[case] expected: Option<&str>) {
        assert_eq!(key_path_at(DEPLOY, line).as_deref(), expected);
    }

    #[test]
    fn namespace_defaults_and_comments_and_empty_documents() {
        let text = "# leading comment\n---\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n...\n";
        let set = ManifestSet::parse(text, Path::new("t.yaml")).unwrap();
        assert_eq!(set.objects.len(), 1);
        assert_eq!(set.objects[0].describe(), "ServiceAccount default/sa");
    }

    #[test]
    fn node_labels_are_kept() {
        let text = "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-a\n  labels:\n    topology.kubernetes.io/zone: z1\n";
        let set = ManifestSet::parse(text, Path::new("n.yaml")).unwrap();
        let node = set.find_node("node-a").unwrap();
        assert_eq!(
            node.metadata.labels.as_ref().unwrap()["topology.kubernetes.io/zone"],
            "z1"
        );
        assert_eq!(set.objects[0].namespace(), None);
    }

    const DEPLOY: &str = "apiVersion: v1
kind: ServiceAccount
metadata:
  name: sa
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: img
        ports:
        - containerPort: 8080
";

    #[test]
    fn the_base_of_the_bad_inputs_parses() {
        let set = ManifestSet::parse(DEPLOY, Path::new("d.yaml")).unwrap();
        assert_eq!(
            set.find_deployment("demo", "web")
                .unwrap()
                .spec
                .as_ref()
                .unwrap()
                .replicas,
            Some(2)
        );
    }

    /// Each bad input is DEPLOY with one edit; the message must name the file, the line and
    /// the field or kind.
    #[rstest]
    #[case::unknown_kind("kind: Deployment", "kind: Deploymnt", &["line 6", "`Deploymnt`", "apps/v1 Deployment"])]
    #[case::wrong_api_version("apiVersion: apps/v1", "apiVersion: v1", &["line 6", "kind `Deployment` of apiVersion `v1`"])]
    #[case::missing_kind("kind: Deployment\n", "", &["line 6", "`kind` is missing"])]
    #[case::missing_api_version("apiVersion: apps/v1\n", "", &["line 6", "`apiVersion` is missing"])]
    #[case::missing_name("  name: web\n", "", &["document at line 6", "line 9", "`metadata.name`"])]
    #[case::missing_metadata("metadata:\n  name: web\n  namespace: demo\n", "", &["line 6", "`metadata.name`"])]
    #[case::wrong_type("replicas: 2", "replicas: two", &["Deployment demo/web", "field `spec.replicas`", "line 12"])]
    #[case::wrong_type_in_list("- containerPort: 8080", "- containerPort: http", &["Deployment demo/web", "field `spec.template.spec.containers[].ports[].containerPort`", "line 25"])]
    #[case::missing_container_name("      - name: web\n        image", "      - image", &["Deployment demo/web", "`spec.template.spec.containers[0].name` is missing"])]
    #[case::missing_container_port("- containerPort: 8080", "- name: http", &["Deployment demo/web", "`spec.template.spec.containers[0].ports[0].containerPort` is 0"])]
    #[case::missing_service_port("kind: ServiceAccount\nmetadata:\n  name: sa\n", "kind: Service\nmetadata:\n  name: sa\nspec:\n  ports:\n  - name: http\n", &["Service default/sa", "`spec.ports[0].port` is 0"])]
    #[case::selector_mismatch("      labels:\n        app: web", "      labels:\n        app: other", &["`spec.selector.matchLabels`", "app: web"])]
    #[case::negative_replicas("replicas: 2", "replicas: -1", &["`spec.replicas`"])]
    #[case::no_spec("spec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: img\n        ports:\n        - containerPort: 8080\n", "status:\n  replicas: 2\n", &["Deployment demo/web", "`spec` is missing"])]
    #[case::misspelt_spec("spec:\n  replicas: 2", "spce:\n  replicas: 2", &["Deployment demo/web", "line 11", "field `spce` is not a field of Deployment"])]
    #[case::scalar_document("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n", "just words\n", &["document at line 1", "not a Kubernetes object"])]
    #[case::bad_yaml("  replicas: 2\n", "  replicas: [2\n", &["not valid YAML", "line 1"])]
    #[case::cluster_scoped_with_namespace("kind: ServiceAccount\nmetadata:\n  name: sa\n", "kind: Node\nmetadata:\n  name: sa\n  namespace: x\n", &["Node sa", "`metadata.namespace`", "cluster-scoped"])]
    #[case::unknown_field_in_a_list("        - containerPort: 8080", "        - containerPort: 8080\n          protcol: TCP", &["Deployment demo/web", "line 26", "field `spec.template.spec.containers[0].ports[0].protcol` is not a field of Deployment"])]
    #[case::unknown_field_in_spec("  replicas: 2", "  replcas: 2", &["Deployment demo/web", "line 12", "field `spec.replcas` is not a field"])]
    #[case::unknown_top_level_field("kind: Deployment", "kind: Deployment\nstatuss: {}", &["line 8", "field `statuss`"])]
    #[case::unknown_field_of_a_service_port("kind: ServiceAccount\nmetadata:\n  name: sa\n", "kind: Service\nmetadata:\n  name: sa\nspec:\n  ports:\n  - port: 8000\n    tagetPort: 8080\n", &["Service default/sa", "line 8", "field `spec.ports[0].tagetPort` is not a field of Service"])]
    #[case::duplicate("kind: ServiceAccount\nmetadata:\n  name: sa\n", "kind: ServiceAccount\nmetadata:\n  name: sa\n  namespace: default\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n", &["ServiceAccount default/sa is already defined by the document at line 1"])]
    fn bad_inputs_are_named(#[case] from: &str, #[case] to: &str, #[case] expected: &[&str]) {
        assert!(DEPLOY.contains(from), "test edit {from:?} does not apply");
        let text = DEPLOY.replacen(from, to, 1);
        let err = ManifestSet::parse(&text, Path::new("bad.yaml")).unwrap_err();
        assert!(matches!(err, MeshError::Manifest { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with("bad.yaml: "), "{message}");
        for fragment in expected {
            assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
        }
    }
}
