//! Feeds arbitrary bytes to the layer extractor. Besides crashes and
//! hangs, it checks the one property that matters most: whatever the
//! archive says, nothing appears outside the layer's directory.
#![no_main]

use std::fs;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    fs::create_dir(&root).expect("root");
    fs::create_dir(&outside).expect("outside");
    let _ = lpmx_unpack::extract::extract(data, &root, "fuzz");
    let escaped: Vec<_> = fs::read_dir(&outside).expect("outside").collect();
    assert!(escaped.is_empty(), "an entry escaped the layer: {escaped:?}");
    let siblings = fs::read_dir(dir.path()).expect("dir").count();
    assert_eq!(siblings, 2, "an entry was created beside the layer");
});
