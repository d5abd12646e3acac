//! Each package's messages survive a prost encode and decode unchanged.

use std::collections::HashMap;

use prost::Message;

use crate::auth::{IstioCertificateRequest, IstioCertificateResponse};
use crate::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource};
use crate::envoy::config::core::v3::Node;
use crate::google::rpc::Status;
use crate::workload::{
    Address, GatewayAddress, LoadBalancing, NetworkAddress, Port, PortList, Service, Workload,
    address, gateway_address,
};

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M) {
    let bytes = message.encode_to_vec();
    assert_eq!(&M::decode(bytes.as_slice()).expect("decodes"), message);
}

#[test]
fn certificate_request_and_response_round_trip() {
    round_trip(&IstioCertificateRequest {
        csr: "-----BEGIN CERTIFICATE REQUEST-----\n...".into(),
        validity_duration: 86_400,
        metadata: Some(prost_types::Struct::default()),
    });
    round_trip(&IstioCertificateResponse {
        cert_chain: vec!["leaf".into(), "root".into()],
    });
}

#[test]
fn certificate_request_fields_have_the_published_numbers() {
    // Field 1 (csr, length-delimited): tag 0x0a; field 3 (validity_duration, varint): 0x18.
    let bytes = IstioCertificateRequest {
        csr: "x".into(),
        validity_duration: 5,
        metadata: None,
    }
    .encode_to_vec();
    assert_eq!(bytes, [0x0a, 1, b'x', 0x18, 5]);
}

#[test]
fn delta_discovery_round_trips() {
    round_trip(&DeltaDiscoveryRequest {
        node: Some(Node {
            id: "sidecar~10.0.0.1~ztunnel.istio-system~istio-system.svc.cluster.local".into(),
            ..Node::default()
        }),
        type_url: crate::ADDRESS_TYPE_URL.into(),
        resource_names_subscribe: vec!["*".into()],
        initial_resource_versions: HashMap::from([("a".into(), "1".into())]),
        response_nonce: "n1".into(),
        error_detail: Some(Status {
            code: 3,
            message: "bad".into(),
            details: vec![],
        }),
        ..DeltaDiscoveryRequest::default()
    });
    round_trip(&DeltaDiscoveryResponse {
        resources: vec![Resource {
            name: "default/reviews.default.svc.cluster.local".into(),
            version: "1".into(),
            resource: Some(prost_types::Any {
                type_url: crate::ADDRESS_TYPE_URL.into(),
                value: vec![1, 2, 3],
            }),
            ..Resource::default()
        }],
        type_url: crate::ADDRESS_TYPE_URL.into(),
        nonce: "n2".into(),
        removed_resources: vec!["gone".into()],
        ..DeltaDiscoveryResponse::default()
    });
}

#[test]
fn workload_and_service_addresses_round_trip() {
    let workload = Workload {
        uid: "Kubernetes//Pod/default/reviews-1".into(),
        name: "reviews-1".into(),
        namespace: "default".into(),
        addresses: vec![vec![10, 0, 0, 7]],
        service_account: "reviews".into(),
        capacity: Some(3),
        services: HashMap::from([(
            "default/reviews.default.svc.cluster.local".into(),
            PortList {
                ports: vec![Port {
                    service_port: 9080,
                    target_port: 9080,
                }],
            },
        )]),
        ..Workload::default()
    };
    round_trip(&Address {
        r#type: Some(address::Type::Workload(workload)),
    });
    let service = Service {
        name: "reviews".into(),
        namespace: "default".into(),
        hostname: "reviews.default.svc.cluster.local".into(),
        addresses: vec![NetworkAddress {
            network: String::new(),
            address: vec![10, 96, 0, 9],
        }],
        waypoint: Some(GatewayAddress {
            destination: Some(gateway_address::Destination::Address(
                NetworkAddress::default(),
            )),
            hbone_mtls_port: 15008,
        }),
        load_balancing: Some(LoadBalancing {
            routing_preference: vec![2, 4],
            mode: 2,
            health_policy: 0,
        }),
        ..Service::default()
    };
    round_trip(&Address {
        r#type: Some(address::Type::Service(service)),
    });
}

#[test]
fn workload_capacity_is_field_27_wrapped() {
    // Field 27 (google.protobuf.UInt32Value, length-delimited): tag 0xda 0x01; inside, field 1.
    let bytes = Workload {
        capacity: Some(3),
        ..Workload::default()
    }
    .encode_to_vec();
    assert_eq!(bytes, [0xda, 0x01, 2, 0x08, 3]);
}
