// torchvision's `transforms.v2.functional.resize(uint8 tensor, [h, w], BICUBIC,
// antialias=True)` on CPU, bit for bit: torch's native uint8 antialiased bicubic, which
// torchvision calls without a float round trip. Ported from PyTorch 2.15
// aten/src/ATen/native/cpu/UpSampleKernel.cpp: `HelperInterpBase::
// _compute_indices_min_size_weights_aa`, `_compute_index_ranges_weights`,
// `_compute_index_ranges_int16_weights`, `HelperInterpCubic::aa_filter` (a = -0.5), and the
// pass order of `upsample_avx_bilinear_bicubic_uint8` (cpu/UpSampleKernelAVXAntialias.h):
// width first over every input row, then height; a pass runs only if its size changes.
//
// It differs from Pillow's bicubic (BicubicResize.swift), on which torch modelled it, in
// three ways that move bytes by one (0.2 % to 20 % of them on a few fixture images): the
// weights have a per-axis precision (the largest that keeps the axis's biggest weight in
// int16) instead of Pillow's fixed 22 bits, the tap count is clamped to the kernel size, and
// the width pass always runs first, over every row.
//
// Per output pixel and pass the kernel reads ⌈2·max(1, in/out)⌉·2 + 1 input bytes per
// channel; a 4000×3000 → 2072×1554 downscale is ~(3000·2072 + 1554·2072)·3·5 ≈ 140 M
// multiply-adds on 32-bit integers: a fraction of a second, compute-bound on the MACs.

/// Resizes `image` to `width × height` exactly as torchvision's antialiased bicubic resize
/// of a uint8 tensor does on CPU.
///
/// torch itself refuses one target on x86 with AVX2 or AVX-512, 1 × 1 from a channels-first
/// image (an internal assert); this returns the filter's value there. `navit_resize` never
/// asks for it.
public func torchBicubicResize(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
    precondition(width > 0 && height > 0, "torchBicubicResize needs a positive size, got \(width)×\(height)")
    if width == image.width && height == image.height { return image }
    var pixels = image.pixels
    if width != image.width {
        pixels = resampleHorizontal(pixels, width: image.width, rows: image.height, rowOffset: 0,
                                    TorchResampleWeights(inSize: image.width, outSize: width))
    }
    if height != image.height {
        pixels = resampleVertical(pixels, width: width, outHeight: height, TorchResampleWeights(inSize: image.height, outSize: height))
    }
    return RGBImage(width: width, height: height, pixels: pixels)
}

/// One axis's int16 filter weights: output i reads `count[i]` inputs from `start[i]` with
/// weights `weights[i * kernelSize ..< i * kernelSize + count[i]]`, scaled by 2^`precision`.
struct TorchResampleWeights: ResampleTaps {
    let kernelSize: Int
    let start: [Int]
    let count: [Int]
    let weights: [Int32]
    let precision: Int

    init(inSize: Int, outSize: Int) {
        // area_pixel_compute_scale (align_corners false, no scale factor given).
        let scale = Double(inSize) / Double(outSize)
        // _compute_index_ranges_weights with antialias: interp_size 4 for bicubic.
        let support = scale >= 1.0 ? (4 * 0.5) * scale : 4 * 0.5
        let taps = Int(support.rounded(.up)) * 2 + 1
        let inverseScale = scale >= 1.0 ? 1.0 / scale : 1.0
        var start = [Int](repeating: 0, count: outSize)
        var count = [Int](repeating: 0, count: outSize)
        var real = [Double](repeating: 0, count: outSize * taps)
        var largest = 0.0
        for output in 0..<outSize {
            // _compute_indices_min_size_weights_aa; C's int64 casts truncate toward zero.
            let center = scale * (Double(output) + 0.5)
            let xmin = max(Int(center - support + 0.5), 0)
            let xsize = min(max(min(Int(center + support + 0.5), inSize) - xmin, 0), taps)
            var total = 0.0
            for j in 0..<xsize {
                // aa_filter<double, use_keys_cubic = true>: torch writes the outer piece as
                // ((a·x − 5a)·x + 8a)·x − 4a, Pillow as (((x − 5)·x + 8)·x − 4)·a; with
                // a = −0.5 every product by a is exact, so the two round identically.
                let w = ResampleCoefficients.bicubic((Double(j + xmin) - center + 0.5) * inverseScale)
                real[output * taps + j] = w
                total += w
            }
            // Only a non-zero sum normalises and counts towards the axis's largest weight.
            if total != 0.0 {
                for j in 0..<xsize {
                    real[output * taps + j] /= total
                    largest = max(largest, real[output * taps + j])
                }
            }
            start[output] = xmin
            count[output] = xsize
        }
        // _compute_index_ranges_int16_weights: the largest precision (< 22) whose doubled
        // scale would still round the largest weight below 2^15.
        var precision = 0
        while precision < 22 {
            if Int(0.5 + largest * Double(1 << (precision + 1))) >= 1 << 15 { break }
            precision += 1
        }
        kernelSize = taps
        self.start = start
        self.count = count
        self.precision = precision
        // Round half away from zero, then stored as int16 (taps past count are zero).
        self.weights = real.map { w in
            let v = w * Double(1 << precision)
            return Int32(Int16(truncatingIfNeeded: Int(v < 0 ? -0.5 + v : 0.5 + v)))
        }
    }
}
