//! Class files: the names (and colours) of a model's or a dataset's
//! classes, as `segment --classes` / `--palette` and `train --classes`
//! read them. JSON (a list, or an object with `"classes"` / `"palette"`,
//! the format of the dataset tables), or plain text: one name per line,
//! or one colour per line as `r g b` or `r,g,b`.

use std::path::Path;

use crate::DataError;

fn json_field(text: &str, field: &str) -> Option<serde_json::Value> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(match value {
        serde_json::Value::Object(mut map) => map.remove(field)?,
        other => other,
    })
}

fn bad(path: &Path, reason: String) -> DataError {
    DataError::ClassFile { path: path.to_path_buf(), reason }
}

/// The class names `text` (the contents of `path`) lists.
pub fn parse_class_names(path: &Path, text: &str) -> Result<Vec<String>, DataError> {
    let names: Vec<String> = match json_field(text, "classes") {
        Some(v) => v
            .as_array()
            .and_then(|a| a.iter().map(|n| n.as_str().map(str::to_string)).collect())
            .ok_or_else(|| bad(path, "\"classes\" must be a list of strings".into()))?,
        None => text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect(),
    };
    if names.is_empty() {
        return Err(bad(path, "no class names".into()));
    }
    Ok(names)
}

/// The class colours `text` (the contents of `path`) lists.
pub fn parse_palette(path: &Path, text: &str) -> Result<Vec<[u8; 3]>, DataError> {
    let colours: Vec<Vec<i64>> = match json_field(text, "palette") {
        Some(v) => v
            .as_array()
            .and_then(|a| a.iter().map(|c| c.as_array().and_then(|c| c.iter().map(|x| x.as_i64()).collect())).collect())
            .ok_or_else(|| bad(path, "\"palette\" must be a list of [r, g, b]".into()))?,
        None => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                l.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|t| !t.is_empty())
                    .map(|t| t.parse::<i64>().map_err(|_| bad(path, format!("line {}: {t:?} is not a number", i + 1))))
                    .collect()
            })
            .collect::<Result<_, _>>()?,
    };
    let palette = colours
        .iter()
        .enumerate()
        .map(|(i, c)| match c.as_slice() {
            &[r, g, b] if [r, g, b].iter().all(|v| (0..=255).contains(v)) => Ok([r as u8, g as u8, b as u8]),
            _ => Err(bad(path, format!("colour {i} is {c:?}, expected three values 0..255"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if palette.is_empty() {
        return Err(bad(path, "no colours".into()));
    }
    Ok(palette)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_colours_in_both_forms() {
        let p = Path::new("c.txt");
        assert_eq!(parse_class_names(p, "road\n\n sky \n").unwrap(), ["road", "sky"]);
        assert_eq!(
            parse_class_names(p, r#"{"classes": ["a", "b"], "palette": [[1, 2, 3], [4, 5, 6]]}"#).unwrap(),
            ["a", "b"]
        );
        assert_eq!(parse_palette(p, r#"{"palette": [[1, 2, 3]]}"#).unwrap(), [[1, 2, 3]]);
        assert_eq!(parse_palette(p, "1 2 3\n4,5,6\n").unwrap(), [[1, 2, 3], [4, 5, 6]]);
        assert!(parse_class_names(p, "").unwrap_err().to_string().contains("no class names"));
        assert!(parse_palette(p, "1 2 300").unwrap_err().to_string().contains("colour 0"));
        assert!(parse_palette(p, "1 x 3").unwrap_err().to_string().contains("line 1"));
        assert!(parse_class_names(p, r#"{"classes": [1]}"#).unwrap_err().to_string().contains("list of strings"));
    }
}
