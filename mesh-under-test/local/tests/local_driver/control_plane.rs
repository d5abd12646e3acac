//! A mesh fed by the control plane: its pod serves the run's CA on 15012, reachable from the
//! pods; a pod's token gets its own identity signed and nothing else; a ztunnel that cannot
//! reach the CA is reported with the CA's address first.

use std::net::SocketAddr;
use std::path::Path;

use meshcert_control_plane::ca::server::ISTIOD_NAME;
use meshcert_istio_api::auth::IstioCertificateRequest;
use meshcert_istio_api::auth::istio_certificate_service_client::IstioCertificateServiceClient;
use meshcert_local::{ConfigSource, LocalMesh, LocalOptions, Run, SocketFactory, ZtunnelCommand};
use meshcert_mesh::manifest::ManifestSet;
use meshcert_mesh::{DeploymentRef, MeshError, MeshUnderTest, PodRef, Profile};
use meshcert_model::Identity;
use meshcert_ztunnel::local_config::Protocol;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request};

use super::{backend_manifests, netns_exists, options_without_ztunnel, work_dir};

/// A namespace outside the ambient mesh with a deployment per service account: pods with
/// tokens, and no ztunnel.
fn outside_the_mesh(service_accounts: &[&str]) -> ManifestSet {
    let mut text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: plain}\n".to_string();
    for name in service_accounts {
        text.push_str(&format!(
            "---\napiVersion: apps/v1\nkind: Deployment\n\
             metadata: {{name: {name}, namespace: plain}}\n\
             spec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  \
             template:\n    metadata: {{labels: {{app: {name}}}}}\n    \
             spec:\n      serviceAccountName: {name}\n      \
             containers: [{{name: app, image: app, ports: [{{containerPort: 8080}}]}}]\n"
        ));
    }
    ManifestSet::parse(&text, Path::new("outside-the-mesh.yaml")).expect("parses")
}

fn identity(service_account: &str) -> Identity {
    Identity::new("cluster.local", "plain", service_account)
}

async fn only_pod(mesh: &LocalMesh, name: &str) -> PodRef {
    let pods = mesh
        .pods(&DeploymentRef::new("plain", name))
        .await
        .expect("deployed");
    assert_eq!(pods.len(), 1, "{pods:?}");
    pods[0].pod_ref()
}

/// A client of the certificate service whose connections start inside `netns`, trusting
/// the run's root and checking istiod's name, as a ztunnel in that pod would.
async fn ca_client(
    sockets: SocketFactory,
    netns: &str,
    address: SocketAddr,
    root_pem: &str,
) -> IstioCertificateServiceClient<Channel> {
    let netns = netns.to_string();
    let connector = tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let (sockets, netns) = (sockets.clone(), netns.clone());
        async move {
            let socket = sockets
                .connector(Some(&netns), address)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let stream = socket.connect(address).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    // istiod's name: its serving certificate names it (and, once merged, its address too).
    let tls = ClientTlsConfig::new().domain_name(ISTIOD_NAME);
    let endpoint = Endpoint::try_from(format!("https://{address}"))
        .and_then(|e| e.tls_config(tls.ca_certificate(Certificate::from_pem(root_pem))))
        .expect("an https endpoint trusting the run's root");
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .expect("connects over TLS from inside the pod");
    IstioCertificateServiceClient::new(channel)
}

/// A certificate request for `identity`, carrying `token` as ztunnel sends it.
fn request(identity: &Identity, token: &str) -> Request<IstioCertificateRequest> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a key");
    let mut params = rcgen::CertificateParams::default();
    let uri = identity.to_string().try_into().expect("ia5");
    params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
    let csr = params.serialize_request(&key).expect("a CSR");
    let mut request = Request::new(IstioCertificateRequest {
        csr: csr.pem().expect("PEM"),
        validity_duration: 3600,
        metadata: None,
    });
    let bearer = format!("Bearer {token}").parse().expect("ASCII");
    request.metadata_mut().insert("authorization", bearer);
    request
}

/// The URI SANs of a certificate in PEM.
fn uris(pem: &str) -> Vec<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
    let cert = pem.parse_x509().expect("a certificate");
    let sans = cert.subject_alternative_name().expect("one SAN extension");
    sans.map(|san| san.value.general_names.clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect()
}

fn fed_by_the_control_plane(mut options: LocalOptions) -> LocalOptions {
    options.config_source = ConfigSource::ControlPlane;
    options
}

pub async fn the_control_plane_signs_each_pod_its_own_identity_only() {
    let run = Run::acquire().unwrap();
    let options = fed_by_the_control_plane(options_without_ztunnel(&run, &["node-1"]));
    let mut mesh = LocalMesh::new(run.clone(), options).unwrap();
    mesh.deploy(&outside_the_mesh(&["reviews", "ratings"]))
        .await
        .unwrap();
    let (reviews, ratings) = (
        only_pod(&mesh, "reviews").await,
        only_pod(&mesh, "ratings").await,
    );
    let istiod = mesh
        .istiod()
        .expect("a mesh fed by the control plane runs istiod");
    assert_eq!(istiod.url(), format!("https://{}", istiod.address()));
    assert_eq!(istiod.address().port(), 15012);
    // None of the scenario's: not a pod the control plane translates, no ztunnel anywhere.
    let snapshot = mesh.snapshot();
    let pods: Vec<&str> = snapshot
        .pods
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert!(mesh.ztunnel_logs().await.unwrap().is_empty());
    assert!(istiod.pushed().workloads.is_empty(), "outside the mesh");
    let namespaces = mesh.namespaces();
    assert!(
        namespaces.iter().any(|n| n == istiod.netns()),
        "{namespaces:?}"
    );

    let root = std::fs::read_to_string(istiod.root_cert()).unwrap();
    let token = std::fs::read_to_string(istiod.token_file(&reviews)).unwrap();
    let other = std::fs::read_to_string(istiod.token_file(&ratings)).unwrap();
    assert_ne!(token, other);
    let netns = mesh.pod_netns(&reviews).unwrap();
    let mut ca = ca_client(mesh.sockets().clone(), netns, istiod.address(), &root).await;
    let chain = ca
        .create_certificate(request(&identity("reviews"), &token))
        .await
        .expect("its own identity is signed")
        .into_inner()
        .cert_chain;
    assert_eq!(chain.len(), 2, "{chain:?}");
    assert_eq!(chain[1], root);
    assert_eq!(uris(&chain[0]), [identity("reviews").to_string()]);
    for (asked, token) in [("ratings", token.as_str()), ("reviews", "0123abcd")] {
        let denied = ca
            .create_certificate(request(&identity(asked), token))
            .await
            .expect_err("another pod's identity, or an unknown token, is refused");
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    }

    mesh.teardown().await.unwrap();
    let left: Vec<&String> = namespaces.iter().filter(|n| netns_exists(n)).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(run.live_namespaces().is_empty());
}

/// Every enrolled pod (here a backend in the ambient namespace) runs a ztunnel fed by the
/// control plane; one that cannot reach the CA fails with the CA's address on the first line,
/// in its own words when it says so, else in ours.
pub async fn a_ztunnel_that_cannot_reach_the_ca_names_its_address_first() {
    let said = "echo \"CA=$CA_ADDRESS XDS=$XDS_ADDRESS ROOT=$CA_ROOT_CA XDS_ROOT=$XDS_ROOT_CA \
                TOKEN=$AUTH_TOKEN MODE=$PROXY_MODE LOCAL=${LOCAL_XDS_PATH-unset} \
                FAKE=${FAKE_CA-unset}\";";
    for complaint in [
        "echo \"error cannot reach the CA at $CA_ADDRESS: refused\" >&2;",
        "",
    ] {
        let run = Run::acquire().unwrap();
        let command = ZtunnelCommand {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), format!("{said} {complaint} exit 1")],
            env: vec![],
            reloads_config: false,
        };
        let options = LocalOptions::new(command, "ztunnel", Profile::Istio, work_dir(&run));
        let mut mesh = LocalMesh::new(run.clone(), fed_by_the_control_plane(options)).unwrap();
        let error = mesh.deploy(&backend_manifests()).await.unwrap_err();
        let istiod = mesh.istiod().expect("running");
        let url = istiod.url();
        let text = error.to_string();
        assert!(matches!(error, MeshError::Ztunnel(_)), "{text}");
        let first = text.lines().next().unwrap();
        assert!(first.contains(&url), "the first line names {url}: {text}");
        assert!(first.contains("for httpbin/in-ambient-"), "{text}");
        assert_eq!(
            first.contains("cannot reach the CA at"),
            !complaint.is_empty(),
            "{text}"
        );
        let pods = mesh
            .pods(&DeploymentRef::new("httpbin", "in-ambient"))
            .await
            .unwrap();
        // Pushed before its ztunnel started: the pod's workload, reached through HBONE.
        let pushed = istiod.pushed();
        let workloads: Vec<(&str, Protocol)> = pushed
            .workloads
            .iter()
            .map(|w| (w.name.as_str(), w.protocol))
            .collect();
        assert_eq!(workloads, [(pods[0].name.as_str(), Protocol::HBONE)]);
        let token = istiod.token_file(&pods[0].pod_ref());
        let log = mesh.dir().join(format!("ztunnel-{}.log", pods[0].name));
        let log = std::fs::read_to_string(&log).unwrap();
        let expected = format!(
            "CA={url} XDS={url} ROOT={root} XDS_ROOT={root} TOKEN={token} MODE=dedicated \
             LOCAL=unset FAKE=unset",
            root = istiod.root_cert().display(),
            token = token.display()
        );
        assert!(log.contains(&expected), "{expected} in {log}");
        assert_eq!(std::fs::read_to_string(&token).unwrap().len(), 32);
        let namespaces = mesh.namespaces();
        mesh.teardown().await.unwrap();
        assert!(namespaces.iter().all(|n| !netns_exists(n)));
        assert!(run.live_namespaces().is_empty());
    }
}
