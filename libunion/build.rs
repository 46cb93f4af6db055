//! libunion names libdl.so.2: on glibc before 2.34, `dlsym` lives there.
fn main() {
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--push-state,--no-as-needed,-Bdynamic,-l:libdl.so.2,--pop-state"
    );
}
