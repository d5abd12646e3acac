//! The control-plane settings, read as upstream ztunnel reads them: where the config comes from
//! (`LOCAL_XDS_PATH` or `XDS_ADDRESS`), where certificates come from (`CA_ADDRESS`, unless
//! `FAKE_CA`), the roots each server must chain to (`XDS_ROOT_CA`, `CA_ROOT_CA`: an existing
//! file, else PEM text), the token sent with every call (`AUTH_TOKEN`: an existing file read per
//! call, else the token itself), the alternative names a server may carry
//! (`ALT_XDS_HOSTNAME`, `ALT_CA_HOSTNAME`), and the certificate lifetime asked for (`SECRET_TTL`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    Env, FAKE_CA, INSTANCE_IP, LOCAL_XDS_PATH, NODE_NAME, POD_NAME, POD_NAMESPACE, XDS_ADDRESS,
    parse_bool,
};
use crate::ZtunnelError;

pub const CA_ADDRESS: &str = "CA_ADDRESS";
pub const XDS_ROOT_CA: &str = "XDS_ROOT_CA";
pub const CA_ROOT_CA: &str = "CA_ROOT_CA";
pub const AUTH_TOKEN: &str = "AUTH_TOKEN";
pub const ALT_XDS_HOSTNAME: &str = "ALT_XDS_HOSTNAME";
pub const ALT_CA_HOSTNAME: &str = "ALT_CA_HOSTNAME";
pub const SECRET_TTL: &str = "SECRET_TTL";
/// The trust domain of this proxy's identity, as upstream reads it for its own.
pub const TRUST_DOMAIN: &str = "TRUST_DOMAIN";

/// Upstream's defaults where the variables are unset.
const DEFAULT_ROOT_CERT: &str = "./var/run/secrets/istio/root-cert.pem";
const DEFAULT_TOKEN: &str = "./var/run/secrets/tokens/istio-token";
const DEFAULT_SECRET_TTL: Duration = Duration::from_secs(24 * 60 * 60);
const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// Upstream's node IP when `INSTANCE_IP` is unset.
const DEFAULT_NODE_IP: &str = "1.1.1.1";
const PEM_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----";

/// Where the routing model comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigSource {
    /// `LOCAL_XDS_PATH`: the file, re-read every `CONFIG_RELOAD_INTERVAL`.
    File(PathBuf),
    /// `XDS_ADDRESS` (with `LOCAL_XDS_PATH` unset): delta xDS from the control plane.
    Xds(ControlPlane),
}

impl ConfigSource {
    /// How logs and errors name the source: the file's path, or the xDS address.
    pub fn origin(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Xds(server) => server.address.clone(),
        }
    }
}

/// One TLS gRPC server of the control plane (istiod's 15012).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlane {
    /// `https://host:port`, as logs name it.
    pub address: String,
    /// The URL's host (brackets stripped): the TLS server name.
    pub host: String,
    pub port: u16,
    pub root: RootCert,
    /// A second name the server's certificate may carry instead of `host`.
    pub alt_hostname: Option<String>,
}

/// The roots a control-plane server must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// Read at every connect, so a rotated root is picked up.
    File(PathBuf),
    Pem(String),
}

/// The bearer token sent as `authorization: Bearer <token>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuthToken {
    #[default]
    None,
    /// Read at every call, as upstream (projected tokens rotate).
    File(PathBuf),
    Static(String),
}

/// The control-plane part of [`super::Config`].
#[derive(Debug, Clone, PartialEq)]
pub struct ControlPlaneSettings {
    pub source: ConfigSource,
    /// `None`: no certificate is fetched (`FAKE_CA=true`, or `CA_ADDRESS` unset).
    pub ca: Option<ControlPlane>,
    pub auth: AuthToken,
    pub secret_ttl: Duration,
    pub fake_ca: bool,
    /// The trust domain of the identity certificates are asked for.
    pub trust_domain: String,
    pub node: XdsNode,
}

/// What the xDS node announces, read raw as upstream's xDS client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsNode {
    pub instance_ip: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub node_name: String,
}

impl XdsNode {
    /// Upstream's node id: `ztunnel~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`.
    pub fn id(&self) -> String {
        let (ip, pod, ns) = (&self.instance_ip, &self.pod_name, &self.pod_namespace);
        format!("ztunnel~{ip}~{pod}.{ns}~{ns}.svc.cluster.local")
    }
}

/// Reads every control-plane variable.
pub(super) fn settings(env: &Env) -> Result<ControlPlaneSettings, ZtunnelError> {
    let fake_ca = env.parse_with(FAKE_CA, parse_bool)?.unwrap_or(false);
    let source = match (env.get(LOCAL_XDS_PATH), env.get(XDS_ADDRESS)) {
        (Some(path), _) => ConfigSource::File(PathBuf::from(path)),
        (None, Some(address)) => ConfigSource::Xds(server(
            env,
            XDS_ADDRESS,
            &address,
            XDS_ROOT_CA,
            ALT_XDS_HOSTNAME,
        )?),
        (None, None) => {
            return Err(ZtunnelError::MissingEnv {
                var: LOCAL_XDS_PATH,
                hint: format!(
                    "point it at the local workload config file, or set {XDS_ADDRESS} to the \
                     control plane's xDS address (https://<host>:15012)"
                ),
            });
        }
    };
    let ca = match env.get(CA_ADDRESS) {
        Some(address) if !fake_ca => Some(server(
            env,
            CA_ADDRESS,
            &address,
            CA_ROOT_CA,
            ALT_CA_HOSTNAME,
        )?),
        _ => None,
    };
    let secret_ttl = env
        .parse_with(SECRET_TTL, |s| {
            meshcert_model::duration::parse(s).and_then(|ttl| match ttl.as_secs() {
                0 => Err("the CA issues whole seconds: ask for at least 1s, e.g. 24h".into()),
                _ => Ok(ttl),
            })
        })?
        .unwrap_or(DEFAULT_SECRET_TTL);
    Ok(ControlPlaneSettings {
        source,
        ca,
        auth: auth_token(env),
        secret_ttl,
        fake_ca,
        trust_domain: env
            .get(TRUST_DOMAIN)
            .unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.to_string()),
        node: XdsNode {
            instance_ip: env
                .get(INSTANCE_IP)
                .unwrap_or_else(|| DEFAULT_NODE_IP.to_string()),
            pod_name: env.get(POD_NAME).unwrap_or_default(),
            pod_namespace: env.get(POD_NAMESPACE).unwrap_or_default(),
            node_name: env.get(NODE_NAME).unwrap_or_default(),
        },
    })
}

/// A server address with its roots and alternative name.
fn server(
    env: &Env,
    var: &'static str,
    address: &str,
    root_var: &'static str,
    alt_var: &'static str,
) -> Result<ControlPlane, ZtunnelError> {
    let (address, host, port) =
        parse_address(address).map_err(|hint| ZtunnelError::InvalidEnv {
            var,
            value: address.to_string(),
            hint,
        })?;
    Ok(ControlPlane {
        address,
        host,
        port,
        root: root_cert(env, root_var)?,
        alt_hostname: env.get(alt_var),
    })
}

/// `https://host:port` (no scheme: https, as upstream); returns it with its host and port.
pub fn parse_address(address: &str) -> Result<(String, String, u16), String> {
    let address = address.trim();
    let full = if address.contains("://") {
        address.to_string()
    } else {
        format!("https://{address}")
    };
    let uri: tonic::codegen::http::Uri = full
        .parse()
        .map_err(|e| format!("not a URL ({e}); expected https://<host>:<port>"))?;
    if uri.scheme_str() != Some("https") {
        return Err("the control plane is reached over TLS: expected https://<host>:<port>".into());
    }
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or("no host; expected https://<host>:<port>")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((full, host, uri.port_u16().unwrap_or(443)))
}

/// Upstream's rule: a path that exists is a PEM file; anything else is the PEM text itself.
fn root_cert(env: &Env, var: &'static str) -> Result<RootCert, ZtunnelError> {
    let given = env.get(var);
    let value = given
        .clone()
        .unwrap_or_else(|| DEFAULT_ROOT_CERT.to_string());
    if Path::new(&value).exists() {
        return Ok(RootCert::File(PathBuf::from(value)));
    }
    if value.contains(PEM_CERTIFICATE) {
        return Ok(RootCert::Pem(value));
    }
    let hint = format!(
        "neither an existing file nor PEM text ({PEM_CERTIFICATE} ...); point it at the mesh's \
         root certificate"
    );
    Err(match given {
        Some(value) => ZtunnelError::InvalidEnv { var, value, hint },
        None => ZtunnelError::MissingEnv {
            var,
            hint: format!("{DEFAULT_ROOT_CERT} does not exist; {hint}"),
        },
    })
}

/// Upstream's rule: a path that exists is a token file; any other value is the token; unset
/// means upstream's default token file when it exists, else no token.
fn auth_token(env: &Env) -> AuthToken {
    match env.get(AUTH_TOKEN) {
        Some(p) if Path::new(&p).exists() => AuthToken::File(PathBuf::from(p)),
        Some(token) => AuthToken::Static(token),
        None if Path::new(DEFAULT_TOKEN).exists() => AuthToken::File(PathBuf::from(DEFAULT_TOKEN)),
        None => AuthToken::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, PROXY_MODE, PROXY_WORKLOAD_INFO};
    use rstest::rstest;

    const ROOT_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    /// A cluster's launch (xDS and CA at one address), with `overrides` on top; `""` unsets.
    fn settings_with(overrides: &[(&str, &str)]) -> Result<ControlPlaneSettings, ZtunnelError> {
        let mut env: Vec<(String, String)> = [
            (PROXY_MODE, "dedicated"),
            (PROXY_WORKLOAD_INFO, "httpbin/client-1/client"),
            (XDS_ADDRESS, "https://10.0.0.9:15012"),
            (CA_ADDRESS, "https://10.0.0.9:15012"),
            (XDS_ROOT_CA, ROOT_PEM),
            (CA_ROOT_CA, ROOT_PEM),
        ]
        .iter()
        .chain(overrides)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.reverse();
        let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Config::from_lookup(lookup).map(|c| c.control_plane)
    }

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("meshcert-cp-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_cluster_launch_reads_config_over_xds_and_certificates_from_the_ca() {
        let settings = settings_with(&[]).unwrap();
        let server = ControlPlane {
            address: "https://10.0.0.9:15012".into(),
            host: "10.0.0.9".into(),
            port: 15012,
            root: RootCert::Pem(ROOT_PEM.into()),
            alt_hostname: None,
        };
        assert_eq!(settings.source, ConfigSource::Xds(server.clone()));
        assert_eq!(settings.ca, Some(server));
        assert_eq!(
            settings.secret_ttl,
            Duration::from_secs(86400),
            "upstream's 24h"
        );
        assert!(!settings.fake_ca);
        assert_eq!(settings.source.origin(), "https://10.0.0.9:15012");
    }

    #[test]
    fn the_file_wins_over_xds_and_fake_ca_skips_the_ca() {
        let settings =
            settings_with(&[(LOCAL_XDS_PATH, "/tmp/zt.yaml"), (FAKE_CA, "true")]).unwrap();
        assert_eq!(settings.source, ConfigSource::File("/tmp/zt.yaml".into()));
        assert_eq!(settings.ca, None);
        let no_ca = settings_with(&[(CA_ADDRESS, "")]).unwrap();
        assert_eq!(
            no_ca.ca, None,
            "CA_ADDRESS unset: no certificate is fetched"
        );
    }

    #[test]
    fn roots_and_tokens_are_files_when_the_path_exists() {
        let root = temp_file("root.pem", ROOT_PEM);
        let token = temp_file("token", "t0ken");
        let (root_s, token_s) = (root.display().to_string(), token.display().to_string());
        let settings = settings_with(&[
            (CA_ROOT_CA, &root_s),
            (AUTH_TOKEN, &token_s),
            (ALT_CA_HOSTNAME, "istiod.istio-system.svc"),
            (SECRET_TTL, "1h30m"),
        ])
        .unwrap();
        let ca = settings.ca.unwrap();
        assert_eq!(ca.root, RootCert::File(root));
        assert_eq!(ca.alt_hostname.as_deref(), Some("istiod.istio-system.svc"));
        assert_eq!(settings.auth, AuthToken::File(token));
        assert_eq!(settings.secret_ttl, Duration::from_secs(5400));
        let fixed = settings_with(&[(AUTH_TOKEN, "not-a-path")]).unwrap();
        assert_eq!(fixed.auth, AuthToken::Static("not-a-path".into()));
    }

    #[rstest]
    #[case(&[(XDS_ADDRESS, "http://10.0.0.9:15012")], "XDS_ADDRESS=\"http://10.0.0.9:15012\" is invalid")]
    #[case(&[(CA_ADDRESS, "https://")], "CA_ADDRESS=\"https://\" is invalid")]
    #[case(&[(CA_ROOT_CA, "/no/such/root.pem")], "CA_ROOT_CA=\"/no/such/root.pem\" is invalid: neither an existing file nor PEM")]
    #[case(&[(XDS_ROOT_CA, "")], "XDS_ROOT_CA is required")]
    #[case(&[(SECRET_TTL, "1 day")], "SECRET_TTL=\"1 day\" is invalid")]
    #[case(&[(SECRET_TTL, "0")], "SECRET_TTL=\"0\" is invalid: the CA issues whole seconds")]
    #[case(&[(XDS_ADDRESS, "")], "LOCAL_XDS_PATH is required")]
    fn bad_control_plane_values_are_named(
        #[case] overrides: &[(&str, &str)],
        #[case] expected: &str,
    ) {
        let err = settings_with(overrides).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }

    #[rstest]
    #[case("https://10.0.0.9:15012", "https://10.0.0.9:15012", "10.0.0.9", 15012)]
    #[case(
        "istiod.istio-system.svc:15012",
        "https://istiod.istio-system.svc:15012",
        "istiod.istio-system.svc",
        15012
    )]
    #[case("https://[::1]:15012", "https://[::1]:15012", "::1", 15012)]
    #[case("https://istiod", "https://istiod", "istiod", 443)]
    fn addresses_read_as_upstream(
        #[case] given: &str,
        #[case] address: &str,
        #[case] host: &str,
        #[case] port: u16,
    ) {
        assert_eq!(
            parse_address(given).unwrap(),
            (address.to_string(), host.to_string(), port)
        );
    }

    #[rstest]
    #[case("http://10.0.0.9:15012", "over TLS")]
    #[case("https://", "not a URL")]
    fn bad_addresses_say_what_is_expected(#[case] given: &str, #[case] expected: &str) {
        let err = parse_address(given).unwrap_err();
        assert!(err.contains(expected), "{err}");
    }
}
