//! Admission: what an API server would accept, the objects it stores, and the snapshot the control plane translates.

use super::*;

impl LocalMesh {
    /// What the API server (and Istio's webhook) would refuse, and what this driver cannot
    /// serve, checked for every object before any is applied, so a refused deploy changes
    /// nothing.
    pub(super) fn admit(&self, manifests: &ManifestSet) -> Result<(), MeshError> {
        for object in &manifests.objects {
            match object {
                Manifest::Service(service) => cluster::validate_service(service)?,
                Manifest::ServiceEntry(entry) => {
                    if let Some(endpoint) = entry.spec.endpoints.first() {
                        return Err(nothing_behind(
                            &object.describe(),
                            "spec.endpoints[0].address",
                            &endpoint.address,
                        ));
                    }
                    cluster::check_service_entry_addresses(entry)?;
                    self.check_addresses_free(object, entry)?;
                }
                Manifest::WorkloadEntry(entry) => {
                    return Err(nothing_behind(
                        &object.describe(),
                        "spec.address",
                        &entry.spec.address,
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A ServiceEntry's own addresses must not be another object's: ztunnel would have two
    /// services behind one VIP.
    pub(super) fn check_addresses_free(
        &self,
        object: &Manifest,
        entry: &ServiceEntry,
    ) -> Result<(), MeshError> {
        let key = (
            object.namespace().unwrap_or_default().to_string(),
            object.name().to_string(),
        );
        for (i, address) in entry.spec.addresses.iter().enumerate() {
            let service = self.services.iter().find(|(_, s)| {
                s.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some(address)
            });
            let other_entry = self
                .service_entries
                .iter()
                .filter(|(k, _)| **k != key)
                .find(|(_, e)| e.all_addresses().contains(&address.as_str()));
            let owner = match (service, other_entry) {
                (Some(((ns, name), _)), _) => format!("Service {ns}/{name}"),
                (None, Some(((ns, name), _))) => format!("ServiceEntry {ns}/{name}"),
                (None, None) => continue,
            };
            return Err(MeshError::InvalidRequest(format!(
                "{}: field `spec.addresses[{i}]` is {address:?}, which {owner} already has: \
                 choose another address, or leave `spec.addresses` empty to have one allocated",
                object.describe()
            )));
        }
        Ok(())
    }

    pub(super) fn add_object(&mut self, object: &Manifest) -> Result<(), MeshError> {
        let namespace = || {
            object
                .namespace()
                .unwrap_or(meshcert_mesh::manifest::DEFAULT_NAMESPACE)
                .to_string()
        };
        match object {
            Manifest::Namespace(ns) => {
                self.namespaces
                    .insert(object.name().to_string(), ns.clone());
            }
            Manifest::ServiceAccount(sa) => {
                self.service_accounts
                    .insert((namespace(), object.name().to_string()), sa.clone());
            }
            Manifest::Service(service) => {
                let key = (namespace(), object.name().to_string());
                self.add_service(key, service)?;
            }
            Manifest::ServiceEntry(entry) => {
                let key = (namespace(), object.name().to_string());
                let mut entry = entry.clone();
                entry.metadata.namespace = Some(key.0.clone());
                for ip in entry.spec.addresses.iter().filter_map(|a| a.parse().ok()) {
                    self.cluster_ips.reserve(ip);
                }
                cluster::assign_service_entry_addresses(
                    &mut entry,
                    self.service_entries.get(&key),
                    &mut self.cluster_ips,
                )?;
                self.service_entries.insert(key, entry);
            }
            Manifest::WorkloadEntry(entry) => {
                let mut entry = entry.clone();
                entry.metadata.namespace = Some(namespace());
                self.workload_entries
                    .insert((namespace(), object.name().to_string()), entry);
            }
            Manifest::DestinationRule(rule) => {
                let mut rule = rule.clone();
                rule.metadata.namespace = Some(namespace());
                self.destination_rules
                    .insert((namespace(), object.name().to_string()), rule);
            }
            Manifest::Node(node) => {
                let name = object.name().to_string();
                let labels = node.metadata.labels.clone().unwrap_or_default();
                match self.nodes.iter_mut().find(|n| n.name == name) {
                    Some(existing) => existing.labels.extend(labels),
                    None => {
                        self.topology.add_node(&name)?;
                        self.nodes.push(NodeSpec { name, labels });
                    }
                }
            }
            Manifest::Deployment(_) => {}
        }
        Ok(())
    }

    /// Stores a Service with its cluster IP: kept when re-applied, as the API server does,
    /// reserved when stated, allocated otherwise.
    fn add_service(&mut self, key: (String, String), service: &Service) -> Result<(), MeshError> {
        let mut service = service.clone();
        service.metadata.namespace = Some(key.0.clone());
        let kept = self
            .services
            .get(&key)
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.cluster_ip.clone());
        if let Some(ip) = kept {
            service.spec.get_or_insert_with(Default::default).cluster_ip = Some(ip);
        }
        if let Some(ip) = service
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.as_deref())
            .and_then(|ip| ip.parse().ok())
        {
            self.cluster_ips.reserve(ip);
        }
        cluster::assign_cluster_ip(&mut service, &mut self.cluster_ips)?;
        self.services.insert(key, service);
        Ok(())
    }

    /// Everything the control plane sees now.
    pub fn snapshot(&self) -> ClusterSnapshot {
        let mut namespaces: Vec<Namespace> = self.namespaces.values().cloned().collect();
        if !self.options.network.is_empty() {
            let system = match namespaces
                .iter_mut()
                .find(|n| n.metadata.name.as_deref() == Some(control_plane::ISTIO_SYSTEM))
            {
                Some(ns) => ns,
                None => {
                    namespaces.push(Namespace {
                        metadata: ObjectMeta {
                            name: Some(control_plane::ISTIO_SYSTEM.into()),
                            ..Default::default()
                        },
                        ..Default::default()
                    });
                    namespaces.last_mut().expect("just pushed")
                }
            };
            system
                .metadata
                .labels
                .get_or_insert_with(Default::default)
                .entry(control_plane::NETWORK_LABEL.to_string())
                .or_insert_with(|| self.options.network.clone());
        }
        ClusterSnapshot {
            cluster_id: self.options.cluster_id.clone(),
            trust_domain: control_plane::CLUSTER_DOMAIN.to_string(),
            nodes: self
                .nodes
                .iter()
                .map(|n| cluster::build_node(&n.name, &n.labels))
                .collect(),
            namespaces,
            services: self.services.values().cloned().collect(),
            pods: self.pods.values().map(|p| p.object.clone()).collect(),
            service_entries: self.service_entries.values().cloned().collect(),
            workload_entries: self.workload_entries.values().cloned().collect(),
            destination_rules: self.destination_rules.values().cloned().collect(),
        }
    }
}
