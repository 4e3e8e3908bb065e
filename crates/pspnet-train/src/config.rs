//! `--config FILE`: a TOML file of settings whose keys are the long flag
//! names with `_`, turned into the flags they stand for (true booleans as
//! bare flags, false ones dropped, arrays joined with commas).

use std::path::Path;

use crate::TrainError;

/// The command-line flags `text` (the contents of `path`) stands for.
pub fn config_flags(path: &Path, text: &str) -> Result<Vec<String>, TrainError> {
    let bad = |reason: String| TrainError::Config(format!("{}: {reason}", path.display()));
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| bad(format!("not TOML: {}", e.message())))?;
    let mut flags = Vec::new();
    for (key, value) in table {
        if key == "config" {
            return Err(bad("a config file cannot name another (`config`)".into()));
        }
        let flag = format!("--{}", key.replace('_', "-"));
        let item = |v: &toml::Value| match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            other => Err(bad(format!("`{key}` is {other}, a string or a number was expected"))),
        };
        match &value {
            toml::Value::Boolean(true) => flags.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                let items: Vec<String> = items.iter().map(item).collect::<Result<_, _>>()?;
                flags.extend([flag, items.join(",")]);
            }
            v => flags.extend([flag, item(v)?]),
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_become_flags() {
        let p = Path::new("c.toml");
        let flags =
            config_flags(p, "iters = 3\nno_shuffle = true\nreduce_zero_label = false\nbins = [1, 2]\ncrop = \"9x9\"")
                .unwrap();
        assert_eq!(flags, ["--bins", "1,2", "--crop", "9x9", "--iters", "3", "--no-shuffle"]);
        assert!(config_flags(p, "config = \"x\"").unwrap_err().to_string().contains("cannot name another"));
        assert!(config_flags(p, "a = { b = 1 }").unwrap_err().to_string().contains("`a` is"));
        assert!(config_flags(p, "= =").unwrap_err().to_string().contains("not TOML"));
    }
}
