//! The mesh under test as a user names it: `reference`, `reference,defect=no-retry`,
//! `ztunnel:./ztunnel,profile=solo,env=LOG_FORMAT=json`, `ztunnel:./ztunnel,config=control-plane`. One spec drives `meshcert run` and
//! each side of `meshcert diff`, and says what the target declares (profile, capabilities).

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use meshcert_local::admin::READY_DEADLINE;
use meshcert_local::{ConfigSource, ZtunnelCommand};
use meshcert_mesh::{Capability, Profile, TargetInfo, external_ztunnel_capabilities};
use meshcert_ztunnel::defects::Defects;

/// Which kind of binary runs as every client pod's ztunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// The bundled reference, reloading its config file on change.
    Reference,
    /// Any ztunnel binary (upstream built with `--features testing`, or the reference run as
    /// a stranger): reads its config once, so a change restarts it.
    Ztunnel,
    /// A real cluster with Istio ambient, through kube-rs.
    Kube,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Reference => "reference",
            TargetKind::Ztunnel => "ztunnel",
            TargetKind::Kube => "kube",
        }
    }
}

/// A target with everything it declares.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    pub kind: TargetKind,
    pub bin: PathBuf,
    /// Arguments before the contract's environment: `reference-ztunnel` when `meshcert`
    /// itself runs the bundled reference; none for any other binary.
    pub args: Vec<String>,
    pub profile: Profile,
    pub capabilities: Vec<Capability>,
    /// Extra environment of the ztunnel, after the contract's (e.g. `LOG_FORMAT=json`).
    pub env: Vec<(String, String)>,
    /// Test-only defect switches of the reference.
    pub defects: Vec<String>,
    /// Whether the binary rereads `LOCAL_XDS_PATH` on change; otherwise it is restarted.
    pub reloads_config: bool,
    /// Where the local mesh's ztunnels get certificates and config: a file, or the mesh's
    /// control plane (no restarts).
    pub config_source: ConfigSource,
    pub ready_timeout: Duration,
    /// Whether the profile was declared (else a cluster's own is used).
    pub profile_declared: bool,
    /// How to reach a cluster (kube targets).
    pub cluster: ClusterAccess,
}

/// A cluster, and what the harness may do in it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterAccess {
    /// Default: `KUBECONFIG`, else `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// iptables faults in pods; without it fault scenarios are skipped.
    pub allow_faults: bool,
    /// Node labels changed for topologies.
    pub allow_node_labels: bool,
    /// The NET_ADMIN debug container's image; default `kube::faults::DEFAULT_FAULT_IMAGE`.
    pub fault_image: Option<String>,
}

const KEYS: &str = "profile, defect, capabilities, env, reloads, config, ready-timeout, kubeconfig, \
                    context, allow-faults, allow-node-labels, fault-image";

impl TargetSpec {
    fn of(kind: TargetKind, bin: PathBuf, profile: Profile, capabilities: Vec<Capability>) -> Self {
        Self {
            kind,
            bin,
            args: Vec::new(),
            profile,
            capabilities,
            env: Vec::new(),
            defects: Vec::new(),
            reloads_config: kind != TargetKind::Ztunnel,
            config_source: ConfigSource::default(),
            ready_timeout: READY_DEADLINE,
            profile_declared: false,
            cluster: ClusterAccess::default(),
        }
    }

    /// The bundled reference: profile `solo`, every local capability, reloads its config.
    pub fn reference(bin: impl Into<PathBuf>) -> Self {
        Self::of(
            TargetKind::Reference,
            bin.into(),
            Profile::Solo,
            Capability::LOCAL.to_vec(),
        )
    }

    /// The bundled reference run by a program that embeds it, e.g. `meshcert reference-ztunnel`:
    /// started through the same launcher, process group and ledger as any binary.
    pub fn reference_command(program: impl Into<PathBuf>, args: &[&str]) -> Self {
        let mut spec = Self::reference(program);
        spec.args = args.iter().map(|a| a.to_string()).collect();
        spec
    }

    /// A ztunnel binary meshcert knows nothing about: the `istio` profile, no cross-network
    /// endpoints (they need an east-west gateway), restarted on every config change.
    pub fn ztunnel(bin: impl Into<PathBuf>) -> Self {
        Self::of(
            TargetKind::Ztunnel,
            bin.into(),
            Profile::Istio,
            external_ztunnel_capabilities(),
        )
    }

    /// A real cluster: the profile its ztunnel image declares unless told, and capabilities
    /// from what the harness may do there (empty here: decided when connected).
    pub fn kube() -> Self {
        Self::of(TargetKind::Kube, PathBuf::new(), Profile::Istio, Vec::new())
    }

    /// Parses `KIND[:PATH][,KEY=VALUE]...`; `reference` without a path is `reference`.
    pub fn parse(text: &str, reference: &TargetSpec) -> Result<Self, String> {
        let bad = |why: String| format!("target {text:?}: {why}");
        let mut parts = text.split(',');
        let head = parts.next().unwrap_or_default().trim();
        let (kind, path) = match head.split_once(':') {
            Some((kind, path)) => (kind, Some(path)),
            None => (head, None),
        };
        let mut spec = match (kind, path) {
            ("reference", None) => reference.clone(),
            ("reference", Some(path)) | ("ztunnel", Some(path)) if path.is_empty() => {
                return Err(bad("the path after ':' is empty".into()));
            }
            ("reference", Some(path)) => Self::reference(path),
            ("ztunnel", Some(path)) => Self::ztunnel(path),
            ("kube", None) => Self::kube(),
            ("kube", Some(context)) => {
                let mut spec = Self::kube();
                spec.cluster.context = Some(context.to_string());
                spec
            }
            ("ztunnel", None) => {
                return Err(bad(
                    "a ztunnel target needs its binary: ztunnel:/path/to/ztunnel".into(),
                ));
            }
            (other, _) => {
                return Err(bad(format!(
                    "unknown kind {other:?}: expected \"reference\", \"ztunnel:PATH\" or \"kube[:CONTEXT]\""
                )));
            }
        };
        for option in parts {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| bad(format!("{option:?} is not KEY=VALUE (keys: {KEYS})")))?;
            spec.set(key.trim(), value.trim()).map_err(bad)?;
        }
        Ok(spec)
    }

    /// Sets one declared property from its text, as the CLI flags and spec options do.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "profile" => {
                self.profile = value.parse()?;
                self.profile_declared = true;
            }
            "kubeconfig" => self.cluster.kubeconfig = Some(PathBuf::from(value)),
            "context" => self.cluster.context = Some(value.to_string()),
            "allow-faults" => self.cluster.allow_faults = parse_bool(key, value)?,
            "allow-node-labels" => self.cluster.allow_node_labels = parse_bool(key, value)?,
            "fault-image" => self.cluster.fault_image = Some(value.to_string()),
            "defect" => self.defects = list(value).map(str::to_string).collect(),
            "capabilities" => {
                self.capabilities = list(value).map(str::parse).collect::<Result<_, String>>()?;
            }
            "env" => {
                let (name, v) = value
                    .split_once('=')
                    .filter(|(name, _)| !name.is_empty())
                    .ok_or_else(|| format!("env {value:?} is not NAME=VALUE"))?;
                self.env.push((name.to_string(), v.to_string()));
            }
            "reloads" => self.reloads_config = parse_bool(key, value)?,
            "config" => self.config_source = value.parse()?,
            "ready-timeout" => {
                self.ready_timeout =
                    meshcert_model::duration::parse(value).map_err(|why| format!("{key} {why}"))?;
            }
            other => return Err(format!("unknown key {other:?} (keys: {KEYS})")),
        }
        Ok(())
    }

    /// Checks the binary and the switches before anything runs; one line per problem.
    pub fn check(&self) -> Result<(), String> {
        let what = match self.kind {
            TargetKind::Reference => "reference ztunnel binary",
            TargetKind::Ztunnel => "ztunnel binary",
            TargetKind::Kube => {
                if !self.defects.is_empty() {
                    return Err("defect switches exist only in the bundled reference".into());
                }
                return Ok(());
            }
        };
        let bin = self.bin.display();
        let meta = std::fs::metadata(&self.bin).map_err(|e| {
            let hint = match self.kind {
                TargetKind::Reference => {
                    "; leave out --reference-bin (and MESHCERT_REFERENCE_BIN) to run the \
                     reference built into meshcert"
                }
                TargetKind::Ztunnel | TargetKind::Kube => "",
            };
            format!("{what} {bin} cannot be used ({e}){hint}")
        })?;
        if !meta.is_file() {
            return Err(format!("{what} {bin} is not a file"));
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(format!("{what} {bin} is not executable (chmod +x {bin})"));
        }
        if !self.defects.is_empty() {
            if self.kind != TargetKind::Reference {
                return Err(format!(
                    "defect switches exist only in the bundled reference, not in {bin}"
                ));
            }
            Defects::parse(&self.defects.join(","))?;
        }
        if self.ready_timeout.is_zero() {
            return Err("ready-timeout must be more than zero".into());
        }
        Ok(())
    }

    /// How the driver launches it: the reference's defect switches travel in its environment.
    pub fn command(&self) -> ZtunnelCommand {
        let mut env = Vec::new();
        if !self.defects.is_empty() {
            env.push((
                "MESHCERT_REFERENCE_DEFECT".to_string(),
                self.defects.join(","),
            ));
        }
        env.extend(self.env.iter().cloned());
        ZtunnelCommand {
            program: self.bin.clone(),
            args: self.args.clone(),
            env,
            reloads_config: self.reloads_config,
        }
    }

    pub fn info(&self) -> TargetInfo {
        let (name, version) = match self.kind {
            TargetKind::Reference => (
                "meshcert reference ztunnel".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
            TargetKind::Ztunnel => (format!("ztunnel {}", self.bin.display()), "unknown".into()),
            TargetKind::Kube => (
                format!(
                    "cluster {}",
                    self.cluster
                        .context
                        .as_deref()
                        .unwrap_or("(current context)")
                ),
                "unknown".into(),
            ),
        };
        TargetInfo {
            kind: self.kind.as_str().into(),
            name,
            version,
            profile: self.profile,
            capabilities: self.capabilities.clone(),
        }
    }

    /// What the reports record about how the target ran.
    pub fn settings(&self) -> BTreeMap<String, String> {
        let mut settings = BTreeMap::new();
        if self.kind == TargetKind::Kube {
            if let Some(context) = &self.cluster.context {
                settings.insert("context".to_string(), context.clone());
            }
            settings.insert(
                "faults allowed".into(),
                self.cluster.allow_faults.to_string(),
            );
            settings.insert(
                "node labels allowed".into(),
                self.cluster.allow_node_labels.to_string(),
            );
            return settings;
        }
        let mut binary = self.bin.display().to_string();
        for arg in &self.args {
            binary.push(' ');
            binary.push_str(arg);
        }
        settings.insert("binary".to_string(), binary);
        settings.insert(
            "config".to_string(),
            match (self.config_source, self.reloads_config) {
                (ConfigSource::ControlPlane, _) => {
                    "pushed by the control plane (CA and xDS)".into()
                }
                (ConfigSource::File, true) => "reloaded on change".into(),
                (ConfigSource::File, false) => "restart on change".into(),
            },
        );
        if !self.defects.is_empty() {
            settings.insert("defects".to_string(), self.defects.join(","));
        }
        for (name, value) in &self.env {
            settings.insert(format!("env {name}"), value.clone());
        }
        settings
    }
}

impl fmt::Display for TargetSpec {
    /// Short, for headings: `reference defect=no-retry (solo)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TargetKind::Reference => f.write_str("reference")?,
            TargetKind::Ztunnel => write!(f, "ztunnel {}", self.bin.display())?,
            TargetKind::Kube => match &self.cluster.context {
                Some(context) => write!(f, "kube {context}")?,
                None => f.write_str("kube")?,
            },
        }
        if !self.defects.is_empty() {
            write!(f, " defect={}", self.defects.join("+"))?;
        }
        if self.kind != TargetKind::Kube && self.config_source != ConfigSource::default() {
            write!(f, " config={}", self.config_source)?;
        }
        write!(f, " ({})", self.profile)
    }
}

/// The commands a local mesh runs, with the Debian package of each (every process in a pod
/// is started through `setpriv` and `nsenter`).
const LOCAL_TOOLS: [(&str, &str); 4] = [
    ("iptables", "iptables"),
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
    ("setpriv", "util-linux"),
];

/// Whether this machine can run local meshes (the `reference` and `ztunnel` targets): the
/// tools on PATH, root, then a namespace made and removed. The error is one line naming what
/// is missing and how to get it, e.g. `iptables is not installed: apt-get install iptables`.
pub fn local_machine_check() -> Result<(), String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing = missing_tools(&std::env::split_paths(&path).collect::<Vec<_>>());
    let mut problems = Vec::new();
    if !missing.is_empty() {
        let (tools, packages): (Vec<&str>, Vec<&str>) = missing.into_iter().unzip();
        let mut packages = packages;
        packages.dedup();
        let verb = if tools.len() == 1 { "is" } else { "are" };
        problems.push(format!(
            "{} {verb} not installed: apt-get install {}",
            tools.join(" and "),
            packages.join(" ")
        ));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        problems.push(
            "local meshes need root (network namespaces and iptables): run as root, e.g. \
             `sudo -E meshcert run`"
                .to_string(),
        );
    }
    if !problems.is_empty() {
        return Err(problems.join("; and "));
    }
    meshcert_local::preflight()
}

/// The tools of [`LOCAL_TOOLS`] that no directory of `path` has as an executable file.
fn missing_tools(path: &[PathBuf]) -> Vec<(&'static str, &'static str)> {
    LOCAL_TOOLS
        .into_iter()
        .filter(|(tool, _)| {
            !path.iter().any(|dir| {
                std::fs::metadata(dir.join(tool))
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
        })
        .collect()
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    value
        .parse()
        .map_err(|_| format!("{key} {value:?} is not true or false"))
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split('+').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const REF: &str = "/opt/meshcert-ztunnel";

    fn parse(text: &str) -> Result<TargetSpec, String> {
        TargetSpec::parse(text, &TargetSpec::reference(REF))
    }

    #[test]
    fn reference_defaults() {
        let spec = parse("reference").unwrap();
        assert_eq!(spec, TargetSpec::reference(REF));
        assert_eq!(spec.profile, Profile::Solo);
        assert!(spec.reloads_config);
        assert!(spec.capabilities.contains(&Capability::CrossNetwork));
        assert_eq!(spec.to_string(), "reference (solo)");
    }

    #[test]
    fn the_reference_built_into_meshcert_is_its_own_program_with_an_argument() {
        let own = TargetSpec::reference_command("/usr/bin/meshcert", &["reference-ztunnel"]);
        let spec = TargetSpec::parse("reference,defect=no-retry", &own).unwrap();
        let command = spec.command();
        assert_eq!(command.program, PathBuf::from("/usr/bin/meshcert"));
        assert_eq!(command.args, ["reference-ztunnel"]);
        assert!(command.reloads_config);
        assert_eq!(spec.defects, ["no-retry"]);
        assert_eq!(
            spec.settings()["binary"],
            "/usr/bin/meshcert reference-ztunnel"
        );
        // A path names another binary, run with no argument.
        let other = TargetSpec::parse("reference:/opt/zt", &own).unwrap();
        assert!(other.command().args.is_empty());
    }

    #[test]
    fn unknown_binaries_are_istio_without_cross_network_and_restarted() {
        let spec = parse("ztunnel:./ztunnel").unwrap();
        assert_eq!(spec.kind, TargetKind::Ztunnel);
        assert_eq!(spec.bin, PathBuf::from("./ztunnel"));
        assert_eq!(spec.profile, Profile::Istio);
        assert!(!spec.reloads_config);
        assert!(!spec.capabilities.contains(&Capability::CrossNetwork));
        assert_eq!(spec.info().version, "unknown");
        assert_eq!(spec.to_string(), "ztunnel ./ztunnel (istio)");
    }

    #[test]
    fn options_override_what_the_kind_declares() {
        let spec = parse(
            "ztunnel:/b/zt,profile=solo,env=LOG_FORMAT=json,env=RUST_LOG=debug,reloads=true,\
             capabilities=scale+ztunnel-logs,ready-timeout=20s",
        )
        .unwrap();
        assert_eq!(spec.profile, Profile::Solo);
        assert!(spec.reloads_config);
        assert_eq!(
            spec.capabilities,
            [Capability::Scale, Capability::ZtunnelLogs]
        );
        assert_eq!(spec.ready_timeout, Duration::from_secs(20));
        let command = spec.command();
        assert_eq!(
            command.env,
            [
                ("LOG_FORMAT".to_string(), "json".to_string()),
                ("RUST_LOG".to_string(), "debug".to_string())
            ]
        );
    }

    #[test]
    fn kube_targets_name_a_context_and_what_the_harness_may_do() {
        let spec = parse("kube:kind-meshcert,allow-faults=true,fault-image=img:1").unwrap();
        assert_eq!(spec.kind, TargetKind::Kube);
        assert_eq!(spec.cluster.context.as_deref(), Some("kind-meshcert"));
        assert!(spec.cluster.allow_faults && !spec.cluster.allow_node_labels);
        assert_eq!(spec.cluster.fault_image.as_deref(), Some("img:1"));
        assert!(!spec.profile_declared);
        assert_eq!(spec.to_string(), "kube kind-meshcert (istio)");
        spec.check().unwrap();
        assert!(parse("kube,profile=solo").unwrap().profile_declared);
    }

    #[test]
    fn defects_travel_in_the_environment() {
        let spec = parse("reference,defect=no-retry+never-eject").unwrap();
        assert_eq!(spec.defects, ["no-retry", "never-eject"]);
        assert_eq!(
            spec.command().env,
            [(
                "MESHCERT_REFERENCE_DEFECT".to_string(),
                "no-retry,never-eject".to_string()
            )]
        );
        assert_eq!(
            spec.to_string(),
            "reference defect=no-retry+never-eject (solo)"
        );
    }

    #[test]
    fn the_config_source_is_a_file_or_the_control_plane() {
        let file = parse("ztunnel:/b/zt,config=file").unwrap();
        assert_eq!(file.config_source, ConfigSource::File);
        assert_eq!(file.settings()["config"], "restart on change");
        let fed = parse("ztunnel:/b/zt,config=control-plane").unwrap();
        assert_eq!(fed.config_source, ConfigSource::ControlPlane);
        assert_eq!(
            fed.settings()["config"],
            "pushed by the control plane (CA and xDS)"
        );
        // Headings name the source only when it is not the default.
        let named = [file, fed].map(|spec| spec.to_string().contains(" config="));
        assert_eq!(named.iter().filter(|n| **n).count(), 1, "{named:?}");
        assert_eq!(
            parse("ztunnel:/b/zt").unwrap().config_source,
            ConfigSource::default()
        );
    }

    #[rstest]
    #[case("cluster", "unknown kind \"cluster\"")]
    #[case(
        "kube,allow-faults=perhaps",
        "allow-faults \"perhaps\" is not true or false"
    )]
    #[case("ztunnel", "needs its binary")]
    #[case("ztunnel:", "the path after ':' is empty")]
    #[case("reference,profile", "\"profile\" is not KEY=VALUE")]
    #[case("reference,colour=red", "unknown key \"colour\"")]
    #[case("reference,profile=ambient", "unknown profile \"ambient\"")]
    #[case("reference,capabilities=teleport", "unknown capability \"teleport\"")]
    #[case("reference,env=NOVALUE", "env \"NOVALUE\" is not NAME=VALUE")]
    #[case("reference,reloads=maybe", "reloads \"maybe\" is not true or false")]
    #[case("reference,config=xds", "config source \"xds\" is neither")]
    #[case(
        "reference,ready-timeout=soon",
        "ready-timeout \"soon\" is not a duration"
    )]
    fn bad_specs_say_what_is_wrong(#[case] text: &str, #[case] expected: &str) {
        let err = parse(text).unwrap_err();
        assert!(err.starts_with(&format!("target {text:?}: ")), "{err}");
        assert!(err.contains(expected), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn check_refuses_missing_directory_and_non_executable_binaries() {
        let dir = std::env::temp_dir().join(format!("meshcert-target-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = TargetSpec::ztunnel(dir.join("nope")).check().unwrap_err();
        assert!(missing.contains("cannot be used"), "{missing}");
        let directory = TargetSpec::ztunnel(&dir).check().unwrap_err();
        assert!(directory.ends_with("is not a file"), "{directory}");
        let plain = dir.join("plain");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = TargetSpec::ztunnel(&plain).check().unwrap_err();
        assert!(err.contains("is not executable"), "{err}");
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755)).unwrap();
        TargetSpec::ztunnel(&plain).check().unwrap();
        let mut with_defect = TargetSpec::ztunnel(&plain);
        with_defect.defects = vec!["no-retry".into()];
        assert!(
            with_defect
                .check()
                .unwrap_err()
                .contains("only in the bundled reference")
        );
        let mut bad_defect = TargetSpec::reference(&plain);
        bad_defect.defects = vec!["bogus".into()];
        assert!(bad_defect.check().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_tools_are_named_with_their_package() {
        let dir = std::env::temp_dir().join(format!("meshcert-tools-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tool = |name: &str, mode: u32| {
            let path = dir.join(name);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        tool("ip", 0o644);
        tool("iptables", 0o644);
        tool("nsenter", 0o755);
        assert_eq!(
            missing_tools(std::slice::from_ref(&dir)),
            [
                ("iptables", "iptables"),
                ("ip", "iproute2"),
                ("setpriv", "util-linux")
            ]
        );
        tool("iptables", 0o755);
        tool("ip", 0o755);
        tool("setpriv", 0o755);
        assert!(missing_tools(&[PathBuf::from("/nonexistent"), dir.clone()]).is_empty());
        assert_eq!(missing_tools(&[]).len(), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
