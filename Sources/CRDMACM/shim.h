// librdmacm (Debian's librdmacm-dev, found through pkg-config's librdmacm.pc).
#include <rdma/rdma_cma.h>
