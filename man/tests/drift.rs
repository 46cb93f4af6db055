//! The committed man pages and completions are what the code generates.

#[test]
fn committed_man_pages_and_completions_match_the_code() {
    for (path, text) in lpmx_man::generated() {
        let committed = std::fs::read_to_string(lpmx_man::man_dir().join(&path))
            .unwrap_or_else(|e| panic!("man/{}: {e}; run `cargo run -p lpmx-man`", path.display()));
        assert!(
            committed == text,
            "man/{} is out of date: run `cargo run -p lpmx-man` and commit the result",
            path.display()
        );
    }
}
