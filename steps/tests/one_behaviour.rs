//! One behaviour, one verdict: every scenario of the bundled feature set (each row of an
//! outline) carries exactly one behaviour ID, so a failing step counts against the behaviour it
//! checks and no other.

use std::path::{Path, PathBuf};

use cucumber::gherkin::{Feature, GherkinEnv};

/// A behaviour ID tag: `L4-RR-1`, `TD-MODE-PC`, `LOC-4` (upper case, dash-separated).
fn is_behaviour(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let first = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    !first.is_empty()
        && first.starts_with(|c: char| c.is_ascii_uppercase())
        && !rest.is_empty()
        && std::iter::once(first).chain(rest.iter().copied()).all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        })
}

fn feature_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("features directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            feature_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "feature") {
            out.push(path);
        }
    }
}

#[test]
fn every_scenario_names_exactly_one_behaviour() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../features");
    let mut files = Vec::new();
    feature_files(&root, &mut files);
    assert!(files.len() > 10, "found only {} feature files", files.len());
    let mut problems = Vec::new();
    let mut scenarios = 0;
    for file in files {
        let feature = Feature::parse_path(&file, GherkinEnv::default())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut rules: Vec<(Vec<String>, &Vec<cucumber::gherkin::Scenario>)> =
            vec![(Vec::new(), &feature.scenarios)];
        rules.extend(feature.rules.iter().map(|r| (r.tags.clone(), &r.scenarios)));
        for (rule_tags, list) in rules {
            for scenario in list {
                let mut base: Vec<&String> = feature.tags.iter().chain(&rule_tags).collect();
                base.extend(&scenario.tags);
                let rows: Vec<Vec<&String>> = if scenario.examples.is_empty() {
                    vec![base.clone()]
                } else {
                    scenario
                        .examples
                        .iter()
                        .map(|e| base.iter().copied().chain(&e.tags).collect())
                        .collect()
                };
                for tags in rows {
                    scenarios += 1;
                    let ids: Vec<&String> = tags.into_iter().filter(|t| is_behaviour(t)).collect();
                    if ids.len() != 1 {
                        problems.push(format!(
                            "{}:{} {:?} has behaviour IDs {ids:?}",
                            file.display(),
                            scenario.position.line,
                            scenario.name
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(scenarios > 40, "only {scenarios} scenarios read");
}

#[test]
fn behaviour_tags_are_told_apart_from_other_tags() {
    for id in ["L4-RR-1", "TD-MODE-PC", "LOC-4", "TD-FO-1", "LOG-2"] {
        assert!(is_behaviour(id), "{id}");
    }
    for tag in ["needs-scale", "profile-solo", "Foo", "L4", "l4-rr-1"] {
        assert!(!is_behaviour(tag), "{tag}");
    }
}
