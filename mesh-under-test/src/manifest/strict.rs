//! Strict reading: k8s-openapi's types ignore fields they do not know, so the document is
//! also read as located YAML and compared with the typed object, to name a misspelt field
//! with its line.

use serde::Deserialize;
use serde_saphyr::Spanned;

/// `&dyn Serialize` for the strict check's closure: serde's trait is not object safe.
pub(super) mod erased {
    pub trait Serialize {
        fn to_json(&self) -> serde_json::Value;
    }

    impl<T: serde::Serialize> Serialize for T {
        fn to_json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}

/// A YAML document as written, with the line of every mapping key (lines of the document's
/// text): what the strict check compares the typed object against.
#[derive(Debug)]
pub(super) enum Located {
    Map(Vec<(String, u64, Located)>),
    Seq(Vec<Located>),
    /// `null`, `~` or no value: such a key sets nothing, so it is never reported.
    Null,
    Scalar,
}

impl<'de> Deserialize<'de> for Located {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{MapAccess, SeqAccess, Visitor};
        struct LocatedVisitor;
        impl<'de> Visitor<'de> for LocatedVisitor {
            type Value = Located;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Located, E> {
                Ok(Located::Null)
            }
            fn visit_none<E>(self) -> Result<Located, E> {
                Ok(Located::Null)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Located, D::Error> {
                Located::deserialize(d)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Located, E> {
                Ok(Located::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Located, E> {
                Ok(Located::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Located, E> {
                Ok(Located::Scalar)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Located, E> {
                Ok(Located::Scalar)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Located, E> {
                Ok(Located::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Located, E> {
                Ok(Located::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Located, E> {
                Ok(Located::Scalar)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Located, E> {
                Ok(Located::Scalar)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Located, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Located::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Located, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value()?;
                    entries.push((key.value, key.referenced.line(), value));
                }
                Ok(Located::Map(entries))
            }
        }
        deserializer.deserialize_any(LocatedVisitor)
    }
}

/// The first key (`spec.ports[0].tagetPort`) and its line that the input has and the typed
/// object, serialised back, lacks: a field its type does not know. Values are not compared
/// (an int-or-string reads either way); only the keys the input sets.
pub(super) fn first_unknown(
    input: &Located,
    typed: &serde_json::Value,
    path: &str,
) -> Option<(String, u64)> {
    match (input, typed) {
        (Located::Map(entries), serde_json::Value::Object(fields)) => {
            entries.iter().find_map(|(key, line, value)| {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (value, fields.get(key)) {
                    (Located::Null, _) => None,
                    (_, None) => Some((here, *line)),
                    (value, Some(typed)) => first_unknown(value, typed, &here),
                }
            })
        }
        (Located::Seq(items), serde_json::Value::Array(typed)) => items
            .iter()
            .zip(typed)
            .enumerate()
            .find_map(|(i, (item, typed))| first_unknown(item, typed, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// The key path (`spec.template.spec.containers[].name`) of the block-style YAML line `line`
/// (1-based), found by walking up to less indented keys; `None` when the line holds no key.
/// serde-saphyr reports where a value failed but not under which key, and the key is what a
/// fixture author searches for.
pub(super) fn key_path_at(text: &str, line: u64) -> Option<String> {
    /// (column of the first dash, column of the key, key) of a `[- ]*key: ...` line.
    fn parse(line: &str) -> Option<(Option<usize>, usize, &str)> {
        let mut col = line.len() - line.trim_start().len();
        let mut dash = None;
        while line[col..].starts_with("- ") || line[col..].starts_with("-\t") {
            dash.get_or_insert(col);
            col += 2;
            col += line[col..].len() - line[col..].trim_start().len();
        }
        let rest = &line[col..];
        let end = rest
            .find(": ")
            .or_else(|| rest.strip_suffix(':').map(str::len))?;
        let key = rest[..end].trim_matches(|c| c == '"' || c == '\'');
        let plain = !key.is_empty() && !key.starts_with(['#', '{', '[', '&', '*', '!', '|', '>']);
        plain.then_some((dash, col, key))
    }
    let lines: Vec<&str> = text.lines().collect();
    let index = usize::try_from(line).ok()?.checked_sub(1)?;
    let (dash, mut col, key) = parse(lines.get(index)?)?;
    let mut path = vec![key.to_string()];
    let mut in_item = false;
    if let Some(d) = dash {
        in_item = true;
        col = d + 1;
    }
    for candidate in lines[..index].iter().rev() {
        let Some((dash, key_col, key)) = parse(candidate) else {
            continue;
        };
        if let Some(d) = dash
            && d < col
            && key_col >= col
        {
            // The first line of the sequence item our line belongs to.
            in_item = true;
            col = d + 1;
            continue;
        }
        if key_col < col {
            path.push(if in_item {
                format!("{key}[]")
            } else {
                key.to_string()
            });
            in_item = dash.is_some();
            col = dash.map_or(key_col, |d| d + 1);
        }
    }
    path.reverse();
    Some(path.join("."))
}
