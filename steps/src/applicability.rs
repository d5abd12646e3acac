//! Decides, before a scenario runs, whether the mesh under test can run it, and marks it when it
//! cannot: a first step that no definition matches, whose text carries the reason. cucumber then
//! reports the scenario skipped in every writer, and the results collector reads the reason back.

use std::sync::Arc;

use cucumber::gherkin::{self, LineCol, Span, StepType};
use cucumber::parser::{self, Parser};
use futures::StreamExt;
use futures::stream::BoxStream;
use meshcert_mesh::{Capability, Profile, TargetInfo};

pub const NOT_APPLICABLE: &str = "this scenario is not applicable: ";
pub const SKIPPED: &str = "this scenario is skipped: ";

/// Why a scenario will not run, or `None` when it will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applicability {
    Runs,
    NotApplicable(String),
    Skipped(String),
}

/// What the suite knows before running anything.
#[derive(Debug, Clone)]
pub struct Gate {
    pub target: TargetInfo,
    /// Why the target cannot run at all on this machine (no root, no network namespaces, ...).
    pub unavailable: Option<String>,
}

impl Gate {
    /// Tags: `@profile-solo` / `@profile-istio` restrict a scenario to one profile;
    /// `@needs-<capability>` (e.g. `@needs-network-faults`) to targets that have it.
    pub fn judge(&self, tags: &[String]) -> Applicability {
        for tag in tags {
            let tag = tag.trim_start_matches('@');
            if let Some(profile) = tag.strip_prefix("profile-") {
                match profile.parse::<Profile>() {
                    Ok(p) if p != self.target.profile => {
                        return Applicability::NotApplicable(format!(
                            "it states profile {p}; the target declares profile {}",
                            self.target.profile
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => return Applicability::Skipped(format!("bad tag @{tag}: {e}")),
                }
            }
        }
        if let Some(reason) = &self.unavailable {
            return Applicability::Skipped(reason.clone());
        }
        for tag in tags {
            let tag = tag.trim_start_matches('@');
            if let Some(name) = tag.strip_prefix("needs-") {
                match name.parse::<Capability>() {
                    Ok(c) if !self.target.supports(c) => {
                        return Applicability::Skipped(format!("the target cannot do {name}"));
                    }
                    Ok(_) => {}
                    Err(e) => return Applicability::Skipped(format!("bad tag @{tag}: {e}")),
                }
            }
        }
        Applicability::Runs
    }

    fn mark(&self, feature_tags: &[String], rule_tags: &[String], scenario: &mut gherkin::Scenario) {
        let mut tags: Vec<String> = feature_tags.to_vec();
        tags.extend_from_slice(rule_tags);
        tags.extend(scenario.tags.iter().cloned());
        tags.extend(scenario.examples.iter().flat_map(|e| e.tags.iter().cloned()));
        let text = match self.judge(&tags) {
            Applicability::Runs => return,
            Applicability::NotApplicable(reason) => format!("{NOT_APPLICABLE}{reason}"),
            Applicability::Skipped(reason) => format!("{SKIPPED}{reason}"),
        };
        scenario.steps.insert(
            0,
            gherkin::Step {
                keyword: "Given ".into(),
                ty: StepType::Given,
                value: text,
                docstring: None,
                table: None,
                span: Span { start: 0, end: 0 },
                position: LineCol { line: scenario.position.line, col: scenario.position.col },
            },
        );
    }
}

/// The first step's text, when it is a marker this module inserted.
pub fn marker(scenario: &gherkin::Scenario) -> Option<Applicability> {
    let first = &scenario.steps.first()?.value;
    if let Some(reason) = first.strip_prefix(NOT_APPLICABLE) {
        Some(Applicability::NotApplicable(reason.to_string()))
    } else {
        first.strip_prefix(SKIPPED).map(|reason| Applicability::Skipped(reason.to_string()))
    }
}

/// cucumber's own parser, then the gate applied to every scenario.
pub struct GatedParser {
    pub inner: parser::Basic,
    pub gate: Arc<Gate>,
}

impl<I: AsRef<std::path::Path>> Parser<I> for GatedParser {
    type Cli = <parser::Basic as Parser<I>>::Cli;
    type Output = BoxStream<'static, parser::Result<gherkin::Feature>>;

    fn parse(self, input: I, cli: Self::Cli) -> Self::Output {
        let gate = self.gate;
        self.inner
            .parse(input, cli)
            .map(move |feature| {
                feature.map(|mut f| {
                    for scenario in &mut f.scenarios {
                        gate.mark(&f.tags, &[], scenario);
                    }
                    for rule in &mut f.rules {
                        for scenario in &mut rule.scenarios {
                            gate.mark(&f.tags, &rule.tags, scenario);
                        }
                    }
                    f
                })
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(profile: Profile, unavailable: Option<&str>) -> Gate {
        Gate {
            target: TargetInfo {
                kind: "reference".into(),
                name: "reference".into(),
                version: "0".into(),
                profile,
                capabilities: vec![Capability::NetworkFaults],
            },
            unavailable: unavailable.map(str::to_string),
        }
    }

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn profile_mismatch_is_not_applicable_even_without_netns() {
        let g = gate(Profile::Istio, Some("no root"));
        assert!(matches!(g.judge(&tags(&["@profile-solo"])), Applicability::NotApplicable(_)));
        assert_eq!(g.judge(&tags(&["@L4-RR-1"])), Applicability::Skipped("no root".into()));
    }

    #[test]
    fn missing_capability_is_skipped() {
        let g = gate(Profile::Solo, None);
        assert_eq!(g.judge(&tags(&["@profile-solo", "@needs-network-faults"])), Applicability::Runs);
        assert!(matches!(g.judge(&tags(&["@needs-app-faults"])), Applicability::Skipped(_)));
        assert!(matches!(g.judge(&tags(&["@needs-teleport"])), Applicability::Skipped(_)));
    }
}
