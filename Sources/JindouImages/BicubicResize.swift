// Pillow's `Image.resize(size, Image.BICUBIC)` on an 8-bit RGB image, bit for bit.
// Ported from Pillow 13.0 src/libImaging/Resample.c: `bicubic_filter` (a = -0.5, support
// 2), `precompute_coeffs`, `normalize_coeffs_8bpc`, `ImagingResampleHorizontal_8bpc`,
// `ImagingResampleVertical_8bpc` and the pass order of `ImagingResampleInner` (box = the
// whole image, no `reducing_gap`, as transformers calls it).
//
// Per output pixel and pass the kernel reads ksize = 2·⌈2·max(1, in/out)⌉ + 1 input bytes
// per channel; a 1000×1000 → 448×448 downscale is ~2·448·1000·11·3 ≈ 30 M multiply-adds:
// tens of milliseconds, compute-bound on the integer MACs.

/// Resizes `image` to `width × height` exactly as Pillow's bicubic filter does.
public func bicubicResize(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
    precondition(width > 0 && height > 0, "bicubicResize needs a positive size, got \(width)×\(height)")
    let inWidth = image.width, inHeight = image.height
    let needHorizontal = width != inWidth
    let needVertical = height != inHeight
    if !needHorizontal && !needVertical { return image }

    // Pillow runs the vertical pass first when the height shrinks more than twice as much
    // as the width, so that the horizontal pass has fewer rows.
    let horizontalFirst = !((inHeight - height) > 0 && (inHeight - height) > (inWidth - width) * 2)
    var vertical = needVertical || (needHorizontal && horizontalFirst)
        ? ResampleCoefficients(inSize: inHeight, outSize: height) : nil
    let horizontal = needHorizontal ? ResampleCoefficients(inSize: inWidth, outSize: width) : nil

    var current = (pixels: image.pixels, width: inWidth, height: inHeight)
    if horizontalFirst {
        if let horizontal {
            // Only the input rows the vertical pass will read.
            var firstRow = 0, lastRow = inHeight
            if var shifted = vertical {
                firstRow = shifted.start[0]
                lastRow = shifted.start[height - 1] + shifted.count[height - 1]
                for i in 0..<height { shifted.start[i] -= firstRow }
                vertical = shifted
            }
            current = (resampleHorizontal(current.pixels, width: current.width, rows: lastRow - firstRow, rowOffset: firstRow, horizontal),
                       width, lastRow - firstRow)
        }
        if needVertical, let vertical {
            current = (resampleVertical(current.pixels, width: current.width, outHeight: height, vertical), current.width, height)
        }
    } else {
        if needVertical, let vertical {
            current = (resampleVertical(current.pixels, width: current.width, outHeight: height, vertical), current.width, height)
        }
        if let horizontal {
            current = (resampleHorizontal(current.pixels, width: current.width, rows: height, rowOffset: 0, horizontal), width, height)
        }
    }
    return RGBImage(width: width, height: height, pixels: current.pixels)
}

/// Fixed-point filter weights for one axis: output i reads `count[i]` inputs from `start[i]`
/// with weights `weights[i * kernelSize ..< i * kernelSize + count[i]]`, scaled by
/// 2^`precision`. Pillow's (`ResampleCoefficients`) and torch's (`TorchResampleWeights`)
/// differ only in how they compute them; the passes below run both.
protocol ResampleTaps {
    var kernelSize: Int { get }
    var start: [Int] { get }
    var count: [Int] { get }
    var weights: [Int32] { get }
    var precision: Int { get }
}

struct ResampleCoefficients: ResampleTaps {
    static let precisionBits = 32 - 8 - 2
    var precision: Int { Self.precisionBits }

    let kernelSize: Int
    var start: [Int]
    var count: [Int]
    var weights: [Int32]

    init(inSize: Int, outSize: Int) {
        let support = 2.0  // bicubic
        // precompute_coeffs with in0 = 0, in1 = inSize (float in Pillow; exact here).
        let scale = Double(Float(inSize) - Float(0)) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let scaledSupport = support * filterScale
        let kernelSize = Int(scaledSupport.rounded(.up)) * 2 + 1
        let inverseFilterScale = 1.0 / filterScale
        var start = [Int](repeating: 0, count: outSize)
        var count = [Int](repeating: 0, count: outSize)
        var weights = [Int32](repeating: 0, count: outSize * kernelSize)
        var k = [Double](repeating: 0, count: kernelSize)
        for output in 0..<outSize {
            let center = 0.0 + (Double(output) + 0.5) * scale
            // C's (int) cast truncates toward zero.
            let xmin = max(Int(center - scaledSupport + 0.5), 0)
            let xmax = min(Int(center + scaledSupport + 0.5), inSize) - xmin
            var total = 0.0
            for x in 0..<max(xmax, 0) {
                let w = Self.bicubic((Double(x + xmin) - center + 0.5) * inverseFilterScale)
                k[x] = w
                total += w
            }
            for x in 0..<max(xmax, 0) {
                if total != 0.0 { k[x] /= total }
                // normalize_coeffs_8bpc: round half away from zero, then truncate.
                let fixed = k[x] * Double(1 << Self.precisionBits)
                weights[output * kernelSize + x] = Int32(k[x] < 0 ? -0.5 + fixed : 0.5 + fixed)
            }
            start[output] = xmin
            count[output] = max(xmax, 0)
        }
        self.kernelSize = kernelSize
        self.start = start
        self.count = count
        self.weights = weights
    }

    static func bicubic(_ value: Double) -> Double {
        let a = -0.5
        let x = value < 0.0 ? -value : value
        if x < 1.0 { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1 }
        if x < 2.0 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0.0
    }
}

/// One pass along rows: each output is clip8((2^(p−1) + Σ w·byte) >> p), the accumulator's
/// integer part clamped to 0…255 (arithmetic shift as in C; torch's saturating packs agree).
func resampleHorizontal(
    _ input: [UInt8], width inWidth: Int, rows: Int, rowOffset: Int, _ c: some ResampleTaps
) -> [UInt8] {
    let outWidth = c.start.count
    let half = Int32(1) << Int32(c.precision - 1), shift = Int32(c.precision)
    @inline(__always) func clip8(_ accumulator: Int32) -> UInt8 { UInt8(clamping: accumulator >> shift) }
    return [UInt8](unsafeUninitializedCapacity: outWidth * rows * 3) { out, initialised in
        input.withUnsafeBufferPointer { input in
            c.weights.withUnsafeBufferPointer { weights in
                for y in 0..<rows {
                    let row = input.baseAddress! + (y + rowOffset) * inWidth * 3
                    let outRow = out.baseAddress! + y * outWidth * 3
                    for x in 0..<outWidth {
                        let k = weights.baseAddress! + x * c.kernelSize
                        let first = row + c.start[x] * 3
                        var r = half, g = half, b = half
                        for i in 0..<c.count[x] {
                            let w = k[i]
                            r = r &+ Int32(first[3 * i]) &* w
                            g = g &+ Int32(first[3 * i + 1]) &* w
                            b = b &+ Int32(first[3 * i + 2]) &* w
                        }
                        outRow[3 * x] = clip8(r)
                        outRow[3 * x + 1] = clip8(g)
                        outRow[3 * x + 2] = clip8(b)
                    }
                }
            }
        }
        initialised = outWidth * rows * 3
    }
}

/// One pass along columns, with the same arithmetic.
func resampleVertical(
    _ input: [UInt8], width: Int, outHeight: Int, _ c: some ResampleTaps
) -> [UInt8] {
    let rowBytes = width * 3
    let half = Int32(1) << Int32(c.precision - 1), shift = Int32(c.precision)
    @inline(__always) func clip8(_ accumulator: Int32) -> UInt8 { UInt8(clamping: accumulator >> shift) }
    return [UInt8](unsafeUninitializedCapacity: rowBytes * outHeight) { out, initialised in
        input.withUnsafeBufferPointer { input in
            c.weights.withUnsafeBufferPointer { weights in
                var sums = [Int32](repeating: 0, count: rowBytes)
                for y in 0..<outHeight {
                    let k = weights.baseAddress! + y * c.kernelSize
                    // Row by row over the kernel so the inner loop streams contiguous bytes;
                    // integer sums, so the order does not change the result.
                    for j in 0..<rowBytes { sums[j] = half }
                    for i in 0..<c.count[y] {
                        let w = k[i]
                        let row = input.baseAddress! + (c.start[y] + i) * rowBytes
                        for j in 0..<rowBytes { sums[j] = sums[j] &+ Int32(row[j]) &* w }
                    }
                    let outRow = out.baseAddress! + y * rowBytes
                    for j in 0..<rowBytes { outRow[j] = clip8(sums[j]) }
                }
            }
        }
        initialised = rowBytes * outHeight
    }
}
