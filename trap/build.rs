//! lpmx-loader is a static program with no libc and no start files, linked
//! at a high address, out of the way of the programs it maps (non-PIE
//! programs sit at 0x400000), with the gadget page where every process
//! under the trap has it.
fn main() {
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        // The ELF headers in the page below the gadget, and one segment
        // for code and read-only data, one for data: each segment is a
        // mapping the kernel makes at every exec.
        "-Wl,--image-base=0x7e19fffff000",
        "-Wl,--no-rosegment",
        "-Wl,-z,norelro",
        // The gadget page where every process under the trap has it
        // (lpmx_sys::GADGET).
        "-Wl,--section-start=.lpmx_gadget=0x7e1a00000000",
        "-Wl,--build-id=none",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
