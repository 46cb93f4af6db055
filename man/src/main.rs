//! Writes the man pages and shell completions into this crate's directory:
//! `cargo run -p lpmx-man`.

fn main() -> anyhow::Result<()> {
    for (path, text) in lpmx_man::generated() {
        let path = lpmx_man::man_dir().join(path);
        std::fs::create_dir_all(path.parent().expect("page directory"))?;
        std::fs::write(&path, text)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
