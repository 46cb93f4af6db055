//! Link flags of the preload: what the loader does for it is paid at
//! every program start in a container.

fn main() {
    // libunion's entry points call each other (lchown -> fchownat, ...):
    // bound inside the library, those calls need no symbol lookup by the
    // loader at each exec (51 of them), and a program's own definition of
    // a libc name does not capture libunion's inner calls.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
}
