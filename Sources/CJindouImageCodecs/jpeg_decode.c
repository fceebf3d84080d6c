// JPEG decoding with libjpeg's `error_exit` replaced by a longjmp that stays inside this
// file. Decoder settings are libjpeg's defaults, as PIL's JpegDecode.c leaves them unless
// `draft()` is called (islow IDCT, fancy upsampling); YCbCr is converted to RGB by libjpeg,
// as PIL asks for JCS_RGB output for mode "RGB".

#include "jindou_image_codecs.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

typedef struct {
    struct jpeg_error_mgr manager;
    jindou_decoded_image *out;
    jmp_buf jump;
} jpeg_error_context;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_error_context *context = (jpeg_error_context *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, context->out->message);
    if (cinfo->is_decompressor) {
        // Set by the SOF parser before it refuses a zero size, so the error can name it.
        context->out->width = ((j_decompress_ptr)cinfo)->image_width;
        context->out->height = ((j_decompress_ptr)cinfo)->image_height;
    }
    longjmp(context->jump, cinfo->err->msg_code == JERR_EMPTY_IMAGE ? JINDOU_IMAGE_EMPTY : JINDOU_IMAGE_CORRUPT);
}

// Warnings (level -1) are recoverable in libjpeg, which pads a truncated stream with gray.
// PIL refuses truncated files ("image file is truncated"), so premature end is an error
// here; other warnings (extraneous bytes before a marker, …) are ignored as PIL does.
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        jpeg_error_context *context = (jpeg_error_context *)cinfo->err;
        (*cinfo->err->format_message)(cinfo, context->out->message);
        longjmp(context->jump, JINDOU_IMAGE_CORRUPT);
    }
}

static const char *color_space_name(J_COLOR_SPACE space) {
    switch (space) {
    case JCS_CMYK: return "CMYK";
    case JCS_YCCK: return "YCCK";
    default: return "unknown";
    }
}

int jindou_jpeg_decode(const uint8_t *data, size_t size, uint64_t max_pixels, jindou_decoded_image *out) {
    memset(out, 0, sizeof(*out));
    struct jpeg_decompress_struct cinfo;
    jpeg_error_context errors;
    uint8_t *volatile pixels = NULL;

    cinfo.err = jpeg_std_error(&errors.manager);
    errors.manager.error_exit = jpeg_on_error;
    errors.manager.emit_message = jpeg_on_message;
    errors.out = out;
    int jumped = setjmp(errors.jump);
    if (jumped) {
        free(pixels);
        out->pixels = NULL;
        jpeg_destroy_decompress(&cinfo);
        return jumped;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);

    out->width = cinfo.image_width;
    out->height = cinfo.image_height;
    out->source_bit_depth = 8;
    if (cinfo.image_width == 0 || cinfo.image_height == 0) {
        snprintf(out->message, sizeof(out->message), "zero width or height");
        jpeg_destroy_decompress(&cinfo);
        return JINDOU_IMAGE_EMPTY;
    }
    if ((uint64_t)cinfo.image_width * (uint64_t)cinfo.image_height > max_pixels) {
        snprintf(out->message, sizeof(out->message), "image exceeds the pixel limit");
        jpeg_destroy_decompress(&cinfo);
        return JINDOU_IMAGE_TOO_LARGE;
    }
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        cinfo.out_color_space = JCS_GRAYSCALE;
        break;
    case JCS_YCbCr:
    case JCS_RGB:
        cinfo.out_color_space = JCS_RGB;
        break;
    default:
        snprintf(out->message, sizeof(out->message), "%s colour space (%d components) is not supported",
                 color_space_name(cinfo.jpeg_color_space), cinfo.num_components);
        jpeg_destroy_decompress(&cinfo);
        return JINDOU_IMAGE_UNSUPPORTED;
    }

    jpeg_start_decompress(&cinfo);
    uint32_t channels = (uint32_t)cinfo.output_components;
    size_t row_bytes = (size_t)cinfo.output_width * channels;
    pixels = malloc(row_bytes * cinfo.output_height);
    if (!pixels) {
        snprintf(out->message, sizeof(out->message), "out of memory for the decoded image");
        jpeg_destroy_decompress(&cinfo);
        return JINDOU_IMAGE_OUT_OF_MEMORY;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + (size_t)cinfo.output_scanline * row_bytes;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);

    out->width = cinfo.output_width;
    out->height = cinfo.output_height;
    out->channels = channels;
    out->bits_per_sample = 8;
    out->pixels = pixels;
    out->pixels_size = row_bytes * cinfo.output_height;
    jpeg_destroy_decompress(&cinfo);
    return JINDOU_IMAGE_OK;
}
