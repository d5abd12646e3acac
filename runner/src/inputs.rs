//! Every input of a run, checked before anything starts (no network namespace, lock file,
//! probe or cluster call yet): the tag expression, the feature files (Gherkin syntax, every
//! step matched by exactly one step definition, applicability tags that name a profile or a
//! capability), that the tags select some scenario, and every fixture (manifests read
//! strictly, topologies). A user's mistake is one line naming the file, the line and what is
//! wrong, and no verdict on the mesh.

use std::path::{Path, PathBuf};

use cucumber::feature::{ExpandExamplesError, Ext as _};
use cucumber::gherkin::{self, GherkinEnv, tagexpr::TagOperation};
use cucumber::tag::Ext as _;
use cucumber::{World as _, step};
use meshcert_mesh::manifest::ManifestSet;
use meshcert_mesh::topology;
use meshcert_steps::MeshWorld;

use crate::applicability::check_tags;

/// At most this many problems are listed; the rest are counted.
const LISTED: usize = 20;

/// What the checks found out about a valid input.
#[derive(Debug)]
pub struct Checked {
    pub tags: Option<TagOperation>,
    /// Scenarios in the feature files (an Examples row counts as one), and how many the tags
    /// select.
    pub scenarios: usize,
    pub selected: usize,
}

/// Checks everything; `Err` holds one line per problem.
pub fn check(features: &Path, fixtures: &Path, tags_text: Option<&str>) -> Result<Checked, String> {
    let tags = tags_text.map(parse_tags).transpose()?;
    let parsed = parse_features(features)?;
    let mut problems = Vec::new();
    let collection = MeshWorld::collection();
    for feature in &parsed {
        problems.extend(check_feature(feature, &collection));
    }
    let mut seen = std::collections::HashSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    if !problems.is_empty() {
        return Err(listed(problems));
    }
    let scenarios: usize = parsed.iter().map(|f| all_scenarios(f).count()).sum();
    let selected = match &tags {
        None => scenarios,
        Some(expr) => parsed
            .iter()
            .flat_map(|f| all_scenarios(f).map(move |(rule, s)| (f, rule, s)))
            .filter(|(f, rule, s)| {
                expr.eval(
                    f.tags
                        .iter()
                        .chain(rule.iter().flat_map(|r| &r.tags))
                        .chain(s.tags.iter()),
                )
            })
            .count(),
    };
    if selected == 0 {
        return Err(match tags_text {
            Some(text) => format!(
                "--tags {text:?} matches none of the {scenarios} scenarios in {}: check the \
                 spelling (tags are case-sensitive, e.g. @L4-RR-1)",
                shown(features)
            ),
            None => format!("{} holds no scenario", shown(features)),
        });
    }
    let problems = check_fixtures(fixtures);
    if !problems.is_empty() {
        return Err(listed(problems));
    }
    Ok(Checked {
        tags,
        scenarios,
        selected,
    })
}

/// A cucumber tag expression, e.g. `@L4-FO-2 or @LOG-1`.
pub fn parse_tags(text: &str) -> Result<TagOperation, String> {
    text.parse().map_err(|e| {
        format!("--tags {text:?} is not a tag expression ({e}); e.g. '@L4-FO-2 or @LOG-1'")
    })
}

fn listed(mut problems: Vec<String>) -> String {
    if problems.len() > LISTED {
        let more = problems.len() - LISTED;
        problems.truncate(LISTED);
        problems.push(format!("... and {more} more"));
    }
    problems.join("\n")
}

/// A path as the user would type it: relative to the current directory when below it.
pub fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok())
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The `.feature` files below `dir`, sorted, as cucumber's parser walks them.
fn feature_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| format!("cannot read features directory {}: {e}", shown(&dir)))?;
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("feature"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Every feature file parsed and its outlines expanded, or one line per file that fails.
fn parse_features(dir: &Path) -> Result<Vec<gherkin::Feature>, String> {
    let mut parsed = Vec::new();
    let mut problems = Vec::new();
    for file in feature_files(dir)? {
        match gherkin::Feature::parse_path(&file, GherkinEnv::default()) {
            Err(e) => problems.push(parse_error(&e)),
            Ok(feature) => match feature.expand_examples() {
                Ok(feature) => parsed.push(feature),
                Err(e) => problems.push(expansion_error(&e)),
            },
        }
    }
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(listed(problems))
    }
}

/// `features/x.feature:12:5: not valid Gherkin: ...` from gherkin's error, whose position
/// and expected tokens are only in its text (`Error at 12:5: {"Scenario", ...}`).
pub fn parse_error(error: &gherkin::ParseFileError) -> String {
    match error {
        gherkin::ParseFileError::Reading { path, source } => {
            format!("{}: cannot read the feature file: {source}", shown(path))
        }
        gherkin::ParseFileError::Parsing {
            path,
            error,
            source,
        } => {
            let text = source.to_string();
            let (position, expected) = text
                .strip_prefix("Error at ")
                .and_then(|rest| rest.split_once(": "))
                .unwrap_or(("", text.as_str()));
            let reason = match error {
                Some(env) => env.to_string(),
                None => match tokens(expected) {
                    t if t.is_empty() => "not a feature file's structure".to_string(),
                    t => format!("expected one of {t}"),
                },
            };
            let reported = position
                .split_once(':')
                .and_then(|(line, _)| line.parse::<usize>().ok());
            // gherkin points past an unknown keyword (often at the next line): name the line
            // that starts with it.
            let line = match (error, reported) {
                (Some(gherkin::EnvError::UnknownKeyword(word)), Some(reported)) => {
                    std::fs::read_to_string(path)
                        .ok()
                        .and_then(|text| line_starting_with(&text, word.trim(), reported))
                        .or(Some(reported))
                }
                (_, reported) => reported,
            };
            match line {
                Some(line) => format!("{}:{line}: not valid Gherkin: {reason}", shown(path)),
                None => format!("{}: not valid Gherkin: {reason}", shown(path)),
            }
        }
    }
}

/// The last line at or before `before` (1-based) whose text starts with `word`.
fn line_starting_with(text: &str, word: &str, before: usize) -> Option<usize> {
    if word.is_empty() {
        return None;
    }
    text.lines()
        .enumerate()
        .take(before)
        .filter(|(_, l)| l.trim_start().starts_with(word))
        .map(|(i, _)| i + 1)
        .last()
}

/// gherkin's expected set (`{"Scenario:", "\n"}`), sorted, with the invisible ones named.
fn tokens(set: &str) -> String {
    let mut tokens: Vec<String> = set
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split("\", \"")
        .map(|t| t.trim_matches('"'))
        .filter(|t| !t.is_empty() && !matches!(*t, "success" | "no match" | "_"))
        .map(|t| match t {
            "\\n" => "a new line".to_string(),
            "\\t" | " " => "a space".to_string(),
            other => format!("`{other}`"),
        })
        .collect();
    tokens.sort();
    tokens.dedup();
    tokens.join(", ")
}

pub fn expansion_error(error: &ExpandExamplesError) -> String {
    let file = error.path.as_deref().map(shown).unwrap_or_default();
    format!(
        "{file}:{}: <{}> is not a column of the Examples table",
        error.pos.line, error.name
    )
}

/// Every scenario of a feature, with its rule.
fn all_scenarios(
    feature: &gherkin::Feature,
) -> impl Iterator<Item = (Option<&gherkin::Rule>, &gherkin::Scenario)> {
    feature.scenarios.iter().map(|s| (None, s)).chain(
        feature
            .rules
            .iter()
            .flat_map(|r| r.scenarios.iter().map(move |s| (Some(r), s))),
    )
}

/// Steps nothing or more than one definition matches, and applicability tags that name
/// nothing. The applicability markers are not in the files: they are added after this check.
fn check_feature(
    feature: &gherkin::Feature,
    collection: &step::Collection<MeshWorld>,
) -> Vec<String> {
    let file = feature.path.as_deref().map(shown).unwrap_or_default();
    let mut problems = Vec::new();
    let backgrounds = feature
        .background
        .iter()
        .chain(feature.rules.iter().filter_map(|r| r.background.as_ref()));
    let steps = backgrounds
        .flat_map(|b| &b.steps)
        .chain(all_scenarios(feature).flat_map(|(_, s)| &s.steps));
    for step in steps {
        let text = format!("{}{}", step.keyword, step.value);
        match collection.find(step) {
            Ok(Some(_)) => {}
            Ok(None) => problems.push(format!(
                "{file}:{}: no step definition matches \"{text}\"",
                step.position.line
            )),
            Err(ambiguous) => problems.push(format!(
                "{file}:{}: {} step definitions match \"{text}\" ({}): make one of them more \
                 specific",
                step.position.line,
                ambiguous.possible_matches.len(),
                ambiguous
                    .possible_matches
                    .iter()
                    .map(|(regex, at)| match at {
                        Some(at) => format!("{}:{}", at.path, at.line),
                        None => regex.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
        }
    }
    problems.extend(check_structure(&file, feature));
    for (rule, scenario) in all_scenarios(feature) {
        let tags: Vec<String> = feature
            .tags
            .iter()
            .chain(rule.iter().flat_map(|r| &r.tags))
            .chain(&scenario.tags)
            .cloned()
            .collect();
        if let Err(e) = check_tags(&tags) {
            problems.push(format!("{file}:{}: {e}", scenario.position.line));
        }
    }
    problems
}

const STEP_KEYWORDS: [&str; 3] = ["Given", "When", "Then"];
const BLOCK_KEYWORDS: [&str; 7] = [
    "Scenario",
    "Scenario Outline",
    "Scenario Template",
    "Example",
    "Examples",
    "Background",
    "Rule",
];

/// What Gherkin accepts but silently drops: a misspelt keyword before a scenario's first step
/// or a misspelt `Scenario:` is read as description text, losing a step or a whole scenario.
/// So: every feature has a scenario, every scenario a step of its own, and no description
/// line starts with a near-miss of a keyword.
fn check_structure(file: &str, feature: &gherkin::Feature) -> Vec<String> {
    let text = feature
        .path
        .as_deref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let mut problems = Vec::new();
    if all_scenarios(feature).next().is_none() {
        problems.push(format!(
            "{file}:{}: the feature has no scenario (is `Scenario:` misspelt?)",
            feature.position.line
        ));
    }
    let mut described: Vec<(usize, &Option<String>, bool)> =
        vec![(feature.position.line, &feature.description, false)];
    for rule in &feature.rules {
        described.push((rule.position.line, &rule.description, false));
    }
    for (_, scenario) in all_scenarios(feature) {
        if scenario.steps.is_empty() {
            problems.push(format!(
                "{file}:{}: scenario \"{}\" has no step (is its first Given, When or Then \
                 misspelt?)",
                scenario.position.line, scenario.name
            ));
        }
        described.push((scenario.position.line, &scenario.description, true));
    }
    for (from, description, steps_may_follow) in described {
        for line in description.iter().flat_map(|d| d.lines()) {
            let line = line.trim();
            let head = line.split_once(':').map(|(h, _)| h.trim());
            let block = head
                .filter(|h| !BLOCK_KEYWORDS.contains(h))
                .and_then(|h| BLOCK_KEYWORDS.iter().find(|k| near(h, k)));
            let first = line.split_whitespace().next().unwrap_or_default();
            let step = (steps_may_follow && !STEP_KEYWORDS.contains(&first))
                .then(|| STEP_KEYWORDS.iter().find(|k| near(first, k)))
                .flatten();
            if let Some(keyword) = block.or(step) {
                let at = line_starting_with_after(&text, line, from).unwrap_or(from);
                problems.push(format!(
                    "{file}:{at}: \"{line}\" is read as description text, not Gherkin: is \
                     `{keyword}` misspelt?"
                ));
            }
        }
    }
    problems
}

/// The first line after `after` (1-based) whose trimmed text is `line`.
fn line_starting_with_after(text: &str, line: &str, after: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(after)
        .find(|(_, l)| l.trim() == line)
        .map(|(i, _)| i + 1)
}

/// A near miss of `keyword` (case-insensitive): one edit or two swapped letters away, for
/// words of four letters or more (shorter ones are ordinary prose: "The", "An").
fn near(word: &str, keyword: &str) -> bool {
    let a: Vec<char> = word.to_lowercase().chars().collect();
    let b: Vec<char> = keyword.to_lowercase().chars().collect();
    if a.len() < 4 || a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    // Optimal string alignment distance.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()] <= 1
}

/// Every manifest in `fixtures/` (strictly: an unknown field is refused) and every topology
/// in `fixtures/topologies/`, one line per bad file.
fn check_fixtures(dir: &Path) -> Vec<String> {
    let yaml = |dir: &Path| -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e == "yml")
            })
            .collect();
        files.sort();
        files
    };
    let manifests = yaml(dir)
        .into_iter()
        .filter_map(|file| ManifestSet::load(&file).err());
    let topologies = yaml(&dir.join("topologies"))
        .into_iter()
        .filter_map(|file| topology::load(&file).err());
    manifests
        .chain(topologies)
        .map(|e| match e {
            meshcert_mesh::MeshError::Manifest { file, message } => {
                format!("{}: {message}", shown(&file))
            }
            other => other.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A features directory of one file with `text`.
    fn features(name: &str, text: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("meshcert-inputs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("l4")).unwrap();
        std::fs::write(dir.join("l4/x.feature"), text).unwrap();
        dir
    }

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
    }

    const GOOD: &str = "@L4-RR-1\nFeature: f\n  Scenario: s\n    Given the guide's apps \"in-ambient\" and \"client-in-ambient\" are deployed\n";

    fn err(name: &str, text: &str, tags: Option<&str>) -> String {
        let dir = features(name, text);
        let e = check(&dir, &fixtures(), tags).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        e
    }

    #[test]
    fn the_project_features_and_fixtures_are_valid() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let checked = check(&root.join("features"), &fixtures(), Some("@L4-RR-1")).unwrap();
        assert!(checked.scenarios > 50, "{checked:?}");
        assert!(
            (1..checked.scenarios).contains(&checked.selected),
            "{checked:?}"
        );
    }

    #[test]
    fn an_unknown_step_is_named_with_its_file_and_line() {
        let text = GOOD.replace("the guide's apps", "the gide's apps");
        let e = err("unknown", &text, None);
        assert!(
            e.ends_with("l4/x.feature:4: no step definition matches \"Given the gide's apps \"in-ambient\" and \"client-in-ambient\" are deployed\""),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn a_syntax_error_names_file_line_and_reason() {
        let text = format!("{GOOD}\n  Scenario t\n    Given x\n");
        let e = err("syntax", &text, None);
        assert!(
            e.ends_with("l4/x.feature:6: not valid Gherkin: Unknown keyword: 'Scen'."),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        let text = GOOD.replace("Given", "Given x\n    Whne");
        let e = err("syntax-step", &format!("{text}    Then y\n"), None);
        assert!(
            e.ends_with("l4/x.feature:5: not valid Gherkin: Unknown keyword: 'Whne'."),
            "{e}"
        );
    }

    /// Gherkin reads these as description text; the check does not.
    #[test]
    fn misspelt_keywords_that_gherkin_would_swallow_are_refused() {
        let e = err(
            "no-scenario",
            &GOOD.replace("  Scenario:", "  Scenaro:"),
            None,
        );
        assert!(
            e.contains("l4/x.feature:2: the feature has no scenario (is `Scenario:` misspelt?)"),
            "{e}"
        );
        assert!(
            e.contains("l4/x.feature:3: \"Scenaro: s\" is read as description text, not Gherkin: is `Scenario` misspelt?"),
            "{e}"
        );
        let e = err("no-step", &GOOD.replace("    Given", "    Gvien"), None);
        assert!(
            e.contains("l4/x.feature:3: scenario \"s\" has no step"),
            "{e}"
        );
        assert!(e.contains("l4/x.feature:4: \"Gvien the guide's"), "{e}");
        let swallowed = GOOD.replace("  Scenario: s\n", "  Scenario: s\n    Whne x\n");
        let e = err("swallowed", &swallowed, None);
        assert!(e.ends_with("l4/x.feature:4: \"Whne x\" is read as description text, not Gherkin: is `When` misspelt?"), "{e}");
        // Prose is prose.
        let prose = GOOD.replace(
            "Feature: f\n",
            "Feature: f\n  The client sends; Then it waits.\n  Notes: the client waits.\n",
        );
        let dir = features("prose", &prose);
        let checked = check(&dir, &fixtures(), None);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(checked.is_ok(), "{checked:?}");
    }

    #[test]
    fn a_step_two_definitions_match_is_refused_with_both() {
        use cucumber::codegen::{LocalBoxFuture, Regex};
        fn noop(_: &mut MeshWorld, _: step::Context) -> LocalBoxFuture<'_, ()> {
            Box::pin(async {})
        }
        let at = |line| step::Location {
            path: "steps/src/steps/x.rs",
            line,
            column: 1,
        };
        let collection = step::Collection::<MeshWorld>::new()
            .given(Some(at(10)), Regex::new("^a (.*)$").unwrap(), noop)
            .given(Some(at(20)), Regex::new("^a b$").unwrap(), noop)
            .given(None, Regex::new("^c$").unwrap(), noop);
        let dir = features(
            "ambiguous",
            "Feature: f\n  Scenario: s\n    Given a b\n    And c\n    And d\n",
        );
        let feature =
            gherkin::Feature::parse_path(dir.join("l4/x.feature"), GherkinEnv::default()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let problems = check_feature(&feature, &collection);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].ends_with(
                "l4/x.feature:3: 2 step definitions match \"Given a b\" (steps/src/steps/x.rs:10 \
                 and steps/src/steps/x.rs:20): make one of them more specific"
            ),
            "{problems:?}"
        );
        // `And` takes the type of the step before it.
        assert!(problems[1].ends_with("l4/x.feature:5: no step definition matches \"And d\""));
    }

    #[test]
    fn near_misses() {
        assert!(near("Whne", "When") && near("Gven", "Given") && near("scenaro", "Scenario"));
        assert!(!near("The", "Then") && !near("Thus", "Then"));
        assert!(!near("Scenarios", "Example") && !near("Background", "Rule"));
    }

    #[test]
    fn an_unknown_outline_column_is_named() {
        let text = "Feature: f\n  Scenario Outline: s\n    Given <app> is deployed\n\n    Examples:\n      | ap |\n      | x  |\n";
        let e = err("outline", text, None);
        assert!(
            e.ends_with("l4/x.feature:3: <app> is not a column of the Examples table"),
            "{e}"
        );
    }

    #[test]
    fn tags_that_do_not_parse_or_match_nothing_are_refused() {
        let e = err("bad-tags", GOOD, Some("@L4-RR-1 and"));
        assert!(
            e.starts_with("--tags \"@L4-RR-1 and\" is not a tag expression"),
            "{e}"
        );
        let e = err("no-match", GOOD, Some("@L4-RR-9"));
        assert!(
            e.starts_with("--tags \"@L4-RR-9\" matches none of the 1 scenarios"),
            "{e}"
        );
        let dir = features("match", GOOD);
        let checked = check(&dir, &fixtures(), Some("@L4-RR-1")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!((checked.scenarios, checked.selected), (1, 1));
    }

    #[test]
    fn an_applicability_tag_that_names_nothing_is_refused() {
        let text = GOOD.replace("  Scenario:", "  @needs-teleport\n  Scenario:");
        let e = err("needs", &text, None);
        assert!(
            e.contains("l4/x.feature:4: tag @needs-teleport names no capability"),
            "{e}"
        );
    }
}
