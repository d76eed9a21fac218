#include <lmdb.h>
#include <fcntl.h>

/// O_DIRECT, which Swift's Glibc module leaves out (glibc defines it only under _GNU_SOURCE); 0 where unknown.
/// The LMDB wrapper sets it on the file of a copy, as mdb_env_copy2 does, so that a backup does not fill the page
/// cache.
static inline int lmdb_shim_o_direct(void) {
#if defined(O_DIRECT)
    return O_DIRECT;
#elif defined(__O_DIRECT)
    return __O_DIRECT;
#else
    return 0;
#endif
}
