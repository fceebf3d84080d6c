// libpng 1.6, found through pkg-config (`libpng.pc` from Debian's libpng-dev).
#include <png.h>
