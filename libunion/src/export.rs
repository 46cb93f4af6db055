//! `export!`: the `extern "C"` entry points libunion defines in place of
//! libc's, each with the safety contract of the libc function it replaces.

macro_rules! export {
    ($($(#[$safe:ident])? fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block)*) => {$(
        $crate::export::export!(@one $($safe)? $name ($($arg: $ty),*) $ret $body);
    )*};
    (@one safe $name:ident ($($arg:ident: $ty:ty),*) $ret:ty $body:block) => {
        /// # Safety
        /// As the libc function of this name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret $body
    };
    (@one $name:ident ($($arg:ident: $ty:ty),*) $ret:ty $body:block) => {
        /// # Safety
        /// As the libc function of this name.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            // SAFETY: the caller keeps the libc contract.
            unsafe { $body }
        }
    };
}
pub(crate) use export;
