/* Linked into the manylinux wheel's extension by tools/build_wheel.py only.

   The wheel is compiled by this machine's GCC (its libstdc++ linked in statically) and
   linked against glibc 2.28's symbol versions (zig's stub libraries). GCC >= 11's
   libstdc++ reads glibc's `__libc_single_threaded` (exported from glibc 2.32 on) to skip
   atomic reference counts in single-threaded processes; glibc 2.28 has no such symbol.
   This hidden definition answers "maybe multi-threaded" (0) always, so every count
   stays atomic: correct everywhere, and the module loads on glibc 2.28. */
__attribute__((visibility("hidden"))) char __libc_single_threaded = 0;
