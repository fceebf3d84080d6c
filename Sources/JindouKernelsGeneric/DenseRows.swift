import JindouTensors
#if JINDOU_AVX2
import _Builtin_intrinsics.intel
#endif

// Row kernels for F32/F16/BF16 weights and block-scaled FP8: Y[t, r] = Σ_c X[t, c] · W[r, c]
// with the weights widened to fp32 in registers, 16 at a time.
//
// Bytes read per call: rows × columns × dtype bytes of weights (each weight is read once
// per call, whatever the token count) + tokens × columns × 4 of activations.
// Roofline: decode (few tokens) is memory-bound, so the target is the machine's read
// bandwidth over the weight bytes; the row kernel keeps two tokens' accumulators
// in registers so a weight tile is loaded once per two tokens.

/// Rows of an F32/F16/BF16 or block-scaled FP8 matrix.
func denseRows(
    _ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, rows: Range<Int>,
    into y: UnsafeMutablePointer<Float>, outputStride: Int
) {
    switch weight.dtype {
    case .bfloat16:
        rowKernel(BFloat16Weights.self, x, tokens: tokens, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .float16:
        rowKernel(Float16Weights.self, x, tokens: tokens, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .float32:
        rowKernel(Float32Weights.self, x, tokens: tokens, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .float8E4M3:
        fp8RowKernel(x, tokens: tokens, weight: weight, rows: rows, y: y, outputStride: outputStride)
    default:
        preconditionFailure("linear: unsupported weight dtype \(weight.dtype.rawValue)")
    }
}

/// How a weight dtype widens 16 elements at a time into fp32 registers.
protocol WeightElements {
    static func load16(_ row: UnsafeRawPointer, _ column: Int) -> SIMD16<Float>
    static func load1(_ row: UnsafeRawPointer, _ column: Int) -> Float
}

enum BFloat16Weights: WeightElements {
    @inline(__always)
    static func load16(_ row: UnsafeRawPointer, _ column: Int) -> SIMD16<Float> {
        #if JINDOU_AVX2
        // Zero-extend and shift in two 8-lane halves: the generic conversion below is not
        // inlined in this module (a stdlib call per 16 weights, a third of the bf16 GEMV).
        let p = row + column &* 2
        return SIMD16<Float>(lowHalf: unsafeBitCast(_mm256_slli_epi32(_mm256_cvtepu16_epi32(loadLow128(p)), 16), to: SIMD8<Float>.self),
                             highHalf: unsafeBitCast(_mm256_slli_epi32(_mm256_cvtepu16_epi32(loadLow128(p + 16)), 16), to: SIMD8<Float>.self))
        #else
        let bits = row.loadUnaligned(fromByteOffset: column &* 2, as: SIMD16<UInt16>.self)
        return unsafeBitCast(SIMD16<UInt32>(truncatingIfNeeded: bits) &<< 16, to: SIMD16<Float>.self)
        #endif
    }
    @inline(__always)
    static func load1(_ row: UnsafeRawPointer, _ column: Int) -> Float {
        BFloat16Conversion.float(fromBits: row.loadUnaligned(fromByteOffset: column &* 2, as: UInt16.self))
    }
}

enum Float16Weights: WeightElements {
    @inline(__always)
    static func load16(_ row: UnsafeRawPointer, _ column: Int) -> SIMD16<Float> {
        SIMD16<Float>(row.loadUnaligned(fromByteOffset: column &* 2, as: SIMD16<Float16>.self))
    }
    @inline(__always)
    static func load1(_ row: UnsafeRawPointer, _ column: Int) -> Float {
        Float(row.loadUnaligned(fromByteOffset: column &* 2, as: Float16.self))
    }
}

enum Float32Weights: WeightElements {
    @inline(__always)
    static func load16(_ row: UnsafeRawPointer, _ column: Int) -> SIMD16<Float> {
        row.loadUnaligned(fromByteOffset: column &* 4, as: SIMD16<Float>.self)
    }
    @inline(__always)
    static func load1(_ row: UnsafeRawPointer, _ column: Int) -> Float {
        row.loadUnaligned(fromByteOffset: column &* 4, as: Float.self)
    }
}

@inline(__always)
private func loadActivations16(_ x: UnsafePointer<Float>, _ column: Int) -> SIMD16<Float> {
    UnsafeRawPointer(x + column).loadUnaligned(as: SIMD16<Float>.self)
}

/// Rows × tokens dot products; tokens are taken two at a time so each 16-wide weight tile
/// is widened once and used twice. Every token sums in the same order whatever the token
/// count (two accumulators over alternate 16-column tiles, then the scalar tail), so a
/// token's row is bit for bit what a one-token call gives: speculative verification and
/// batched decoding then choose exactly the tokens one-token decoding chooses.
private func rowKernel<W: WeightElements>(
    _: W.Type, _ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, rows: Range<Int>,
    y: UnsafeMutablePointer<Float>, outputStride: Int
) {
    let columns = weight.columns
    let vectorEnd = columns & ~15
    for r in rows {
        let row = weight.rowPointer(r)
        var t = 0
        while t + 2 <= tokens {
            let x0 = x + t * columns, x1 = x0 + columns
            // Two accumulators per token hide the fused multiply-add latency.
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), b0 = SIMD16<Float>(), b1 = SIMD16<Float>()
            var c = 0
            while c + 32 <= vectorEnd {
                let w0 = W.load16(row, c), w1 = W.load16(row, c &+ 16)
                a0 = a0.multiplyAdding(w0, loadActivations16(x0, c))
                a1 = a1.multiplyAdding(w1, loadActivations16(x0, c &+ 16))
                b0 = b0.multiplyAdding(w0, loadActivations16(x1, c))
                b1 = b1.multiplyAdding(w1, loadActivations16(x1, c &+ 16))
                c &+= 32
            }
            if c < vectorEnd {
                let w0 = W.load16(row, c)
                a0 = a0.multiplyAdding(w0, loadActivations16(x0, c))
                b0 = b0.multiplyAdding(w0, loadActivations16(x1, c))
                c &+= 16
            }
            var s0 = (a0 + a1).sum(), s1 = (b0 + b1).sum()
            while c < columns {
                let w = W.load1(row, c)
                s0 += w * x0[c]
                s1 += w * x1[c]
                c += 1
            }
            y[t * outputStride + r] = s0
            y[(t + 1) * outputStride + r] = s1
            t += 2
        }
        while t < tokens {
            let x0 = x + t * columns
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>()
            var c = 0
            while c + 32 <= vectorEnd {
                a0 = a0.multiplyAdding(W.load16(row, c), loadActivations16(x0, c))
                a1 = a1.multiplyAdding(W.load16(row, c &+ 16), loadActivations16(x0, c &+ 16))
                c &+= 32
            }
            if c < vectorEnd {
                a0 = a0.multiplyAdding(W.load16(row, c), loadActivations16(x0, c))
                c &+= 16
            }
            var s = (a0 + a1).sum()
            while c < columns {
                s += W.load1(row, c) * x0[c]
                c += 1
            }
            y[t * outputStride + r] = s
            t += 1
        }
    }
}

/// FP8 E4M3 weights with block scales (DeepSeek-V3's recipe): each 16-wide tile is widened
/// in registers, partial sums are kept per column block and multiplied by that block's
/// scale. Bytes read: rows × columns × 1 (+ one float per block), half of BF16.
private func fp8RowKernel(
    _ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, rows: Range<Int>,
    y: UnsafeMutablePointer<Float>, outputStride: Int
) {
    let scales = weight.blockScales!
    let columns = weight.columns
    let block = scales.blockColumns
    @inline(__always) func widen16(_ row: UnsafeRawPointer, _ c: Int) -> SIMD16<Float> {
        #if JINDOU_AVX2
        let p = row + c
        let bytes = SIMD16<UInt32>(lowHalf: unsafeBitCast(_mm256_cvtepu8_epi32(loadLow64(p)), to: SIMD8<UInt32>.self),
                                   highHalf: unsafeBitCast(_mm256_cvtepu8_epi32(loadLow64(p + 8)), to: SIMD8<UInt32>.self))
        #else
        let bytes = SIMD16<UInt32>(truncatingIfNeeded: row.loadUnaligned(fromByteOffset: c, as: SIMD16<UInt8>.self))
        #endif
        let bits = (bytes & 0x80) &<< 24 | (bytes & 0x7F) &<< 20
        return unsafeBitCast(bits, to: SIMD16<Float>.self) * 0x1p120
    }
    for r in rows {
        let row = weight.rowPointer(r)
        let bytes = row.assumingMemoryBound(to: UInt8.self)
        for t in 0..<tokens {
            let xt = x + t * columns
            var total: Float = 0
            var start = 0
            while start < columns {
                let end = min(columns, start + block)
                var acc = SIMD16<Float>()
                var c = start
                while c + 16 <= end {
                    acc = acc.multiplyAdding(widen16(row, c), UnsafeRawPointer(xt + c).loadUnaligned(as: SIMD16<Float>.self))
                    c += 16
                }
                var partial = acc.sum()
                while c < end {
                    partial += FP8E4M3.float(bytes[c]) * xt[c]
                    c += 1
                }
                total += partial * scales.scale(row: r, column: start)
                start = end
            }
            y[t * outputStride + r] = total
        }
    }
}

/// Rows `range` of `weight` widened to fp32, row-major (the tiles the BLAS path multiplies):
/// the dense dtypes and both block formats 16 weights at a time in registers, FP8 through
/// `WeightMatrix.widenRows`.
func widenWeightRows(_ weight: WeightMatrix, _ range: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
    let columns = weight.columns
    @inline(__always) func store(_ v: SIMD16<Float>, _ out: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(out).storeBytes(of: v, as: SIMD16<Float>.self)
    }
    if let format = weight.blockFormat {
        for (i, r) in range.enumerated() {
            let row = weight.rowPointer(r), out = destination + i * columns
            switch format {
            case .q8_0:
                for b in 0..<(columns / 32) {
                    let p = row + b &* 34, o = out + b &* 32
                    let d = SIMD16<Float>(repeating: Float(halfBits: p.loadUnaligned(as: UInt16.self)))
                    store(SIMD16<Float>(p.loadUnaligned(fromByteOffset: 2, as: SIMD16<Int8>.self)) * d, o)
                    store(SIMD16<Float>(p.loadUnaligned(fromByteOffset: 18, as: SIMD16<Int8>.self)) * d, o + 16)
                }
            case .q4_K:
                let low = SIMD16<UInt8>(repeating: 0x0F)
                for s in 0..<(columns / 256) {
                    let (d, dmin, packed, quants) = Q4_K.parts(row + s &* 144)
                    for group in 0..<4 {
                        let (s1, m1) = Q4_K.scaleMin(2 &* group, packed), (s2, m2) = Q4_K.scaleMin(2 &* group &+ 1, packed)
                        let d1 = SIMD16<Float>(repeating: d * Float(s1)), min1 = SIMD16<Float>(repeating: dmin * Float(m1))
                        let d2 = SIMD16<Float>(repeating: d * Float(s2)), min2 = SIMD16<Float>(repeating: dmin * Float(m2))
                        let q0 = quants.loadUnaligned(fromByteOffset: 32 &* group, as: SIMD16<UInt8>.self)
                        let q1 = quants.loadUnaligned(fromByteOffset: 32 &* group &+ 16, as: SIMD16<UInt8>.self)
                        let o = out + (s &* 256 &+ group &* 64)
                        store(d1 * SIMD16<Float>(q0 & low) - min1, o)
                        store(d1 * SIMD16<Float>(q1 & low) - min1, o + 16)
                        store(d2 * SIMD16<Float>(q0 &>> 4) - min2, o + 32)
                        store(d2 * SIMD16<Float>(q1 &>> 4) - min2, o + 48)
                    }
                }
            default:
                weight.widenRows(r..<(r + 1), into: out)
            }
        }
        return
    }
    func widen<W: WeightElements>(_: W.Type) {
        let vectorEnd = columns & ~15
        for (i, r) in range.enumerated() {
            let row = weight.rowPointer(r), out = destination + i * columns
            var c = 0
            while c < vectorEnd {
                store(W.load16(row, c), out + c)
                c &+= 16
            }
            while c < columns {
                out[c] = W.load1(row, c)
                c += 1
            }
        }
    }
    switch weight.dtype {
    case .bfloat16: widen(BFloat16Weights.self)
    case .float16: widen(Float16Weights.self)
    default: weight.widenRows(range, into: destination)
    }
}

#if JINDOU_AVX2
/// 16 bytes at `p` (unaligned) in an SSE register.
@inline(__always)
private func loadLow128(_ p: UnsafeRawPointer) -> __m128i {
    _mm_loadu_si128(p.assumingMemoryBound(to: __m128i.self))
}

/// 8 bytes at `p` (unaligned) in the low half of an SSE register.
@inline(__always)
private func loadLow64(_ p: UnsafeRawPointer) -> __m128i {
    _mm_cvtsi64_si128(p.loadUnaligned(as: Int64.self))
}
#endif

/// Rows of a block-quantised matrix with fp32 activations (`WeightMatrix.floatActivations`):
/// each row widened once into the thread's scratch, then one fp32 dot product per token, in
/// the same order whatever the token count.
func floatActivationRows(_ call: RowCall, _ rows: Range<Int>) {
    let weight = call.weight, columns = weight.columns
    let row = threadScratch(.widenedRow, Float.self, count: columns)
    for r in rows {
        widenWeightRows(weight, r..<(r + 1), into: row)
        for t in 0..<call.tokens {
            call.y[t &* call.outputStride &+ r] = dotProduct(row, call.x + t &* columns, count: columns)
        }
    }
}
