// PNG decoding with libpng's simplified error handling replaced by setjmp/longjmp that
// stays inside this file. Transformations mirror how PIL's PngImagePlugin opens a file
// (PIL 13, `_MODES`): 16-bit samples keep their high byte ("RGB;16B", "RGBA;16B",
// "LA;16B") except 16-bit grayscale, which PIL keeps as "I;16" and is returned unreduced;
// 1/2/4-bit grayscale is scaled to 8 bits; palettes are expanded with their tRNS alpha;
// gray/RGB tRNS colours are reported, not applied, because PIL matches them after its own
// 8-bit conversion (Convert.c `rgbT2a`), which the Swift side reproduces. No gamma or
// colour management is applied (PIL applies none).

#include "jindou_image_codecs.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t offset;
    jindou_decoded_image *out;
    jmp_buf jump;
} png_context;

static void png_on_error(png_structp png, png_const_charp message) {
    png_context *context = (png_context *)png_get_error_ptr(png);
    snprintf(context->out->message, sizeof(context->out->message), "%s", message);
    longjmp(context->jump, 1);
}

static void png_on_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

static void png_read_memory(png_structp png, png_bytep destination, size_t length) {
    png_context *context = (png_context *)png_get_io_ptr(png);
    if (length > context->size - context->offset) {
        png_error(png, "truncated PNG data (unexpected end of file)");
    }
    memcpy(destination, context->data + context->offset, length);
    context->offset += length;
}

static uint32_t big_endian_32(const uint8_t *bytes) {
    return (uint32_t)bytes[0] << 24 | (uint32_t)bytes[1] << 16 | (uint32_t)bytes[2] << 8 | bytes[3];
}

int jindou_png_decode(const uint8_t *data, size_t size, uint64_t max_pixels, jindou_decoded_image *out) {
    memset(out, 0, sizeof(*out));
    // IHDR is the first chunk (signature, length, "IHDR", width, height). Check its size
    // here: libpng refuses a zero size with a generic "Invalid IHDR data", and a huge one
    // should be refused before libpng allocates anything for it.
    if (size >= 24 && memcmp(data + 12, "IHDR", 4) == 0) {
        out->width = big_endian_32(data + 16);
        out->height = big_endian_32(data + 20);
        if (out->width == 0 || out->height == 0) {
            snprintf(out->message, sizeof(out->message), "zero width or height");
            return JINDOU_IMAGE_EMPTY;
        }
        if ((uint64_t)out->width * (uint64_t)out->height > max_pixels) {
            snprintf(out->message, sizeof(out->message), "image exceeds the pixel limit");
            return JINDOU_IMAGE_TOO_LARGE;
        }
    }
    png_context context = {.data = data, .size = size, .offset = 0, .out = out};
    // Written between setjmp and a possible longjmp, so volatile.
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    volatile int status = JINDOU_IMAGE_CORRUPT;

    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &context, png_on_error, png_on_warning);
    if (!png) {
        snprintf(out->message, sizeof(out->message), "png_create_read_struct failed");
        return JINDOU_IMAGE_OUT_OF_MEMORY;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        snprintf(out->message, sizeof(out->message), "png_create_info_struct failed");
        return JINDOU_IMAGE_OUT_OF_MEMORY;
    }
    if (setjmp(context.jump)) {
        free(rows);
        free(pixels);
        png_destroy_read_struct(&png, &info, NULL);
        out->pixels = NULL;
        return status;
    }
    png_set_read_fn(png, &context, png_read_memory);
    // The caller's pixel limit is the real bound; lift libpng's 1,000,000-per-side default
    // so a long thin image within the limit is not refused by libpng first.
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    out->width = width;
    out->height = height;
    out->source_bit_depth = (uint32_t)bit_depth;
    if (width == 0 || height == 0) {
        status = JINDOU_IMAGE_EMPTY;
        png_error(png, "zero width or height");
    }
    if ((uint64_t)width * (uint64_t)height > max_pixels) {
        status = JINDOU_IMAGE_TOO_LARGE;
        png_error(png, "image exceeds the pixel limit");
    }

    png_color_16p transparent = NULL;
    int has_trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        out->was_palette = 1;
        png_set_palette_to_rgb(png);
        if (has_trns) {
            png_set_tRNS_to_alpha(png);
        }
    } else if (has_trns && (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_RGB)) {
        png_get_tRNS(png, info, NULL, NULL, &transparent);
        if (transparent) {
            out->has_transparent_color = 1;
            out->transparent_gray = transparent->gray;
            out->transparent_red = transparent->red;
            out->transparent_green = transparent->green;
            out->transparent_blue = transparent->blue;
        }
    }
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) {
        png_set_expand_gray_1_2_4_to_8(png);
    }
    int keep_16 = bit_depth == 16 && color_type == PNG_COLOR_TYPE_GRAY;
    if (bit_depth == 16 && !keep_16) {
        png_set_strip_16(png);  // high byte, as PIL's ";16B" unpackers
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    uint32_t channels = png_get_channels(png, info);
    uint32_t bytes_per_sample = keep_16 ? 2 : 1;
    size_t row_bytes = png_get_rowbytes(png, info);
    if (row_bytes != (size_t)width * channels * bytes_per_sample) {
        png_error(png, "unexpected row layout after transformations");
    }
    status = JINDOU_IMAGE_OUT_OF_MEMORY;
    pixels = malloc(row_bytes * height);
    rows = malloc(sizeof(png_bytep) * height);
    if (!pixels || !rows) {
        png_error(png, "out of memory for the decoded image");
    }
    for (png_uint_32 y = 0; y < height; y++) {
        rows[y] = pixels + (size_t)y * row_bytes;
    }
    status = JINDOU_IMAGE_CORRUPT;
    png_read_image(png, rows);
    // No png_read_end: PIL stops after the image data too, and does not refuse a file
    // whose trailing chunks (or IEND) are missing.

    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    out->channels = channels;
    out->bits_per_sample = bytes_per_sample * 8;
    out->pixels = pixels;
    out->pixels_size = row_bytes * height;
    return JINDOU_IMAGE_OK;
}

void jindou_decoded_image_release(jindou_decoded_image *image) {
    free(image->pixels);
    image->pixels = NULL;
    image->pixels_size = 0;
}
