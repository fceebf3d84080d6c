// libjpeg (libjpeg-turbo's libjpeg 6.2 API), found through pkg-config (`libjpeg.pc` from
// Debian's libjpeg62-turbo-dev). jpeglib.h needs FILE and size_t declared first.
#include <stddef.h>
#include <stdio.h>
#include <jpeglib.h>
