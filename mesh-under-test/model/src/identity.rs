//! A workload's SPIFFE identity as Istio names it: `spiffe://<trust domain>/ns/<ns>/sa/<sa>`.
//! The certificate authority issues it and a peer's certificate carries it.

use std::fmt;
use std::str::FromStr;

/// The identity of the workloads running as one service account in one namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

impl Identity {
    pub fn new(
        trust_domain: impl Into<String>,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
    ) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl FromStr for Identity {
    type Err = String;

    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        let refuse = |problem: &str| {
            Err(format!(
                "{uri:?} is not a SPIFFE identity: {problem} \
                 (expected spiffe://<trust domain>/ns/<namespace>/sa/<service account>)"
            ))
        };
        let Some(path) = uri.strip_prefix("spiffe://") else {
            return refuse("it does not start with spiffe://");
        };
        let segments: Vec<&str> = path.split('/').collect();
        let [trust_domain, "ns", namespace, "sa", service_account] = segments[..] else {
            return refuse("the path is not /ns/<namespace>/sa/<service account>");
        };
        if [trust_domain, namespace, service_account]
            .iter()
            .any(|segment| segment.is_empty())
        {
            return refuse("a segment is empty");
        }
        Ok(Self::new(trust_domain, namespace, service_account))
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::Identity;

    #[test]
    fn parses_and_prints_the_same_uri() {
        let uri = "spiffe://cluster.local/ns/default/sa/reviews";
        let identity: Identity = uri.parse().expect("an identity");
        assert_eq!(
            identity,
            Identity::new("cluster.local", "default", "reviews")
        );
        assert_eq!(identity.to_string(), uri);
    }

    #[rstest]
    #[case::no_scheme("cluster.local/ns/default/sa/reviews", "spiffe://")]
    #[case::other_scheme("https://cluster.local/ns/default/sa/reviews", "spiffe://")]
    #[case::no_sa("spiffe://cluster.local/ns/default", "the path")]
    #[case::extra_segment("spiffe://cluster.local/ns/default/sa/reviews/x", "the path")]
    #[case::swapped("spiffe://cluster.local/sa/reviews/ns/default", "the path")]
    #[case::empty_namespace("spiffe://cluster.local/ns//sa/reviews", "empty")]
    #[case::empty_trust_domain("spiffe:///ns/default/sa/reviews", "empty")]
    fn refuses_what_is_not_an_istio_identity(#[case] uri: &str, #[case] says: &str) {
        let problem = uri.parse::<Identity>().expect_err("refused");
        assert!(problem.contains(says), "{problem}");
        assert!(problem.contains(uri), "{problem}");
    }
}
