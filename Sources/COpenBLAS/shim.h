// OpenBLAS's CBLAS interface, found through pkg-config (`openblas.pc` from Debian's libopenblas-dev).
#include <cblas.h>
