//! The committed bash completions complete as a user's shell would: the
//! script is sourced into a real bash and its completion function called
//! the way bash calls it on Tab.

use std::process::Command;

/// The words bash offers for the command line `line` (completed at its
/// end) with `tool`'s committed completion script loaded.
fn complete(tool: &str, line: &str) -> Vec<String> {
    let script = lpmx_man::man_dir().join("completions/bash").join(tool);
    let function = format!("_{}", tool.replace('-', "__"));
    let program = format!(
        r#"source "$1"
read -ra COMP_WORDS <<<"$2"
[[ $2 == *' ' ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE=$2
COMP_POINT=${{#COMP_LINE}}
prev=""
[ "$COMP_CWORD" -gt 0 ] && prev=${{COMP_WORDS[COMP_CWORD-1]}}
{function} "{tool}" "${{COMP_WORDS[COMP_CWORD]}}" "$prev"
printf '%s\n' "${{COMPREPLY[@]}}""#
    );
    let output = Command::new("bash")
        .args(["-c", &program, "complete"])
        .arg(&script)
        .arg(line)
        .output()
        .expect("run bash");
    assert!(
        output.status.success(),
        "bash failed completing {line:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8 words")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_options_and_subcommands() {
    // What is typed narrows the words to those it starts.
    assert_eq!(complete("lpmx-exec", "lpmx-exec --ro"), ["--root"]);
    let words = complete("lpmx-env", "lpmx-env dev ");
    for subcommand in ["set", "unset", "list", "host", "expose"] {
        assert!(
            words.contains(&subcommand.to_owned()),
            "{subcommand}: {words:?}"
        );
    }
    let words = complete("lpmx-pull", "lpmx-pull --");
    assert!(words.contains(&"--platform".to_owned()), "{words:?}");
    assert!(words.iter().all(|w| w.starts_with("--")), "{words:?}");
}
