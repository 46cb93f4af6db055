//! The image config's Env, from a Singularity image's environment scripts
//! (`/.singularity.d/env/*.sh`), read without running them.

use std::path::PathBuf;

/// The variables the image's environment scripts export, in the order
/// they first appear, later values replacing earlier ones. Scripts run in
/// name order, as Singularity sources them. Only simple lines count:
/// `export KEY=VALUE`, the value bare, 'single-quoted' or "double-quoted",
/// with `$NAME`, `${NAME}`, `${NAME:-word}` and `${NAME-word}` taken from
/// what the scripts set before; a line with command substitution or
/// anything else a shell would have to run is skipped.
pub fn environment(scripts: &[(PathBuf, Vec<u8>)]) -> Vec<String> {
    let mut sorted: Vec<&(PathBuf, Vec<u8>)> = scripts.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut vars: Vec<(String, String)> = Vec::new();
    for (_, script) in sorted {
        for line in String::from_utf8_lossy(script).lines() {
            let Some((key, value)) = export_line(line, &vars) else {
                continue;
            };
            match vars.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => vars.push((key, value)),
            }
        }
    }
    vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn export_line(line: &str, vars: &[(String, String)]) -> Option<(String, String)> {
    let line = line.trim();
    let rest = line.strip_prefix("export")?;
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let (key, raw) = rest.trim_start().split_once('=')?;
    let mut chars = key.chars();
    let first = chars.next()?;
    if !(first.is_ascii_alphabetic() || first == '_')
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return None;
    }
    let raw = raw.trim_end().strip_suffix(';').unwrap_or(raw.trim_end());
    let value = if let Some(inner) = raw
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .filter(|inner| !inner.contains('\''))
    {
        inner.to_owned()
    } else if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        expand(inner, vars, true)?
    } else {
        expand(raw, vars, false)?
    };
    Some((key.to_owned(), value))
}

/// Expands the parameter forms a simple export uses; `None` for anything
/// else (command substitution, unquoted blanks, quotes inside).
fn expand(text: &str, vars: &[(String, String)], quoted: bool) -> Option<String> {
    let lookup = |name: &str| {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '`' | '"' | '\'' => return None,
            c if c.is_whitespace() && !quoted => return None,
            '$' => {
                let rest = &text[at + 1..];
                if let Some(braced) = rest.strip_prefix('{') {
                    let end = braced.find('}')?;
                    let inner = &braced[..end];
                    let (name, default) = if let Some((name, word)) = inner.split_once(":-") {
                        (name, Some((word, true)))
                    } else if let Some((name, word)) = inner.split_once('-') {
                        (name, Some((word, false)))
                    } else {
                        (inner, None)
                    };
                    if name.is_empty() || !name.chars().all(is_name) {
                        return None;
                    }
                    let value = lookup(name);
                    match (value, default) {
                        (Some(""), Some((word, true))) => out.push_str(word),
                        (Some(v), _) => out.push_str(v),
                        (None, Some((word, _))) => out.push_str(word),
                        (None, None) => {}
                    }
                    // Skip `{inner}`.
                    for _ in 0..braced[..=end].chars().count() + 1 {
                        chars.next();
                    }
                } else {
                    let name: String = rest.chars().take_while(|&c| is_name(c)).collect();
                    if name.is_empty() {
                        return None;
                    }
                    out.push_str(lookup(&name).unwrap_or(""));
                    for _ in 0..name.chars().count() {
                        chars.next();
                    }
                }
            }
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(scripts: &[(&str, &str)]) -> Vec<String> {
        let scripts: Vec<(PathBuf, Vec<u8>)> = scripts
            .iter()
            .map(|(name, text)| (PathBuf::from(name), text.as_bytes().to_vec()))
            .collect();
        environment(&scripts)
    }

    #[test]
    fn simple_exports_become_the_environment() {
        let env = env_of(&[
            (
                "90-environment.sh",
                "#!/bin/sh\n# comment\nexport GREETING=\"hello world\"\nexport PATH=\"/opt/bin:$PATH\"\nexport RAW='a $b'\nexport X=1;\nFOO=bar\nexport BAD=$(id -u)\nexport DEF=${UNSET:-fallback}\n",
            ),
            (
                "10-docker2singularity.sh",
                "#!/bin/sh\nexport PATH=\"/usr/local/bin:/usr/bin:/bin\"\n",
            ),
        ]);
        assert_eq!(
            env,
            [
                "PATH=/opt/bin:/usr/local/bin:/usr/bin:/bin",
                "GREETING=hello world",
                "RAW=a $b",
                "X=1",
                "DEF=fallback",
            ]
        );
    }
}
