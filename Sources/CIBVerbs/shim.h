// libibverbs (Debian's libibverbs-dev, found through pkg-config's libibverbs.pc).
#include <infiniband/verbs.h>
