#ifndef JINDOU_IMAGE_CODECS_H
#define JINDOU_IMAGE_CODECS_H

// PNG and JPEG decoding behind plain return codes. libpng reports errors by longjmp and
// libjpeg by calling `error_exit`; neither may unwind through Swift frames, so every
// library call happens in these C functions, which catch the jump and return a status.

#include <stddef.h>
#include <stdint.h>

enum jindou_image_status {
    JINDOU_IMAGE_OK = 0,
    /// The library rejected the data (bad signature, CRC, Huffman table, truncation…).
    JINDOU_IMAGE_CORRUPT = 1,
    /// The header declares more than `max_pixels` pixels; nothing was decoded.
    JINDOU_IMAGE_TOO_LARGE = 2,
    /// The header declares a zero width or height.
    JINDOU_IMAGE_EMPTY = 3,
    /// A colour space this decoder does not convert (JPEG CMYK/YCCK).
    JINDOU_IMAGE_UNSUPPORTED = 4,
    /// malloc failed.
    JINDOU_IMAGE_OUT_OF_MEMORY = 5,
};

/// A decoded image before any RGB conversion, as close to what PIL's decoder hands to
/// `Image.convert` as libpng/libjpeg can give it.
typedef struct {
    uint32_t width;
    uint32_t height;
    /// 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA (interleaved, rows top to bottom).
    uint32_t channels;
    /// 8, or 16 (big-endian samples) for 16-bit grayscale PNGs without alpha, which PIL
    /// opens as mode "I;16" rather than reducing to 8 bits.
    uint32_t bits_per_sample;
    /// The PNG's own bit depth (1, 2, 4, 8 or 16); 8 for JPEG.
    uint32_t source_bit_depth;
    /// A gray/RGB PNG with a tRNS chunk: the transparent colour as stored (16-bit values).
    /// Palette transparency is expanded into the alpha channel instead.
    int32_t has_transparent_color;
    uint16_t transparent_gray;
    uint16_t transparent_red;
    uint16_t transparent_green;
    uint16_t transparent_blue;
    /// A palette PNG (its colours are already expanded to RGB or RGBA).
    int32_t was_palette;
    uint8_t *pixels;
    size_t pixels_size;
    /// The library's message when status is not OK (NUL-terminated).
    char message[256];
} jindou_decoded_image;

/// Decodes a PNG held in memory. On JINDOU_IMAGE_OK `out->pixels` must be released with
/// `jindou_decoded_image_release`; on any other status nothing needs releasing, and
/// width/height are filled in whenever the header was read.
int jindou_png_decode(const uint8_t *data, size_t size, uint64_t max_pixels, jindou_decoded_image *out);

/// Decodes a baseline or progressive JPEG held in memory, grayscale as 1 channel and
/// YCbCr/RGB as 3 channels (libjpeg's default islow IDCT and fancy upsampling, as PIL).
/// A truncated stream is an error (PIL refuses it too), not gray padding.
int jindou_jpeg_decode(const uint8_t *data, size_t size, uint64_t max_pixels, jindou_decoded_image *out);

void jindou_decoded_image_release(jindou_decoded_image *image);

#endif
