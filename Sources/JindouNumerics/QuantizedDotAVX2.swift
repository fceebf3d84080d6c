// Integer-dot kernels for Q8_0 and Q4_K weights on AVX2 (as llama.cpp's ggml-cpu does):
// the activations are quantised to int8 per 32-column block once per call, then each
// weight block's dot product is computed in integers — `vpmaddubsw` (u8 × s8 pairs →
// s16) and `vpmaddwd` (pairs → s32) — converted to fp32 and scaled by the product of
// the two block scales. That is ~6 instructions per 32 weights instead of widening every
// weight to fp32, which is what keeps a quantised GEMV near the memory roofline.
//
// Bytes read per call: as the fp32-widening kernels (QuantizedLinear.swift); the
// activations' int8 copy (tokens × columns bytes) stays in L1/L2.
// Accuracy: the activations' rounding adds a relative error of about 2⁻⁸ per element
// (what llama.cpp accepts for these formats); tests bound it against the exact product.
//
// Compiled only when the target CPU has AVX2/FMA/F16C (Package.swift defines
// JINDOU_AVX2); otherwise the fp32-widening kernels run.

#if JINDOU_AVX2
import _Builtin_intrinsics.intel

/// Activations as int8 blocks of 32 with one fp32 scale per block, and each block's fp32
/// sum (for Q4_K's `min` term).
struct Int8Activations {
    var values: UnsafeMutablePointer<Int8>
    var scales: UnsafeMutablePointer<Float>
    var sums: UnsafeMutablePointer<Float>
    let blocksPerToken: Int

    /// Quantises `tokens` rows of `columns` floats (columns a multiple of 32):
    /// d = max|x| / 127, q = round-half-away(x / d).
    static func with<R>(_ x: UnsafePointer<Float>, tokens: Int, columns: Int, _ body: (Int8Activations) -> R) -> R {
        let blocks = columns / 32
        return withUnsafeTemporaryAllocation(of: Int8.self, capacity: max(1, tokens * columns)) { values in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: max(1, 2 * tokens * blocks)) { floats in
                let activations = Int8Activations(values: values.baseAddress!, scales: floats.baseAddress!,
                                                  sums: floats.baseAddress! + tokens * blocks, blocksPerToken: blocks)
                for b in 0..<(tokens * blocks) {
                    let v0 = UnsafeRawPointer(x + 32 * b).loadUnaligned(as: SIMD16<Float>.self)
                    let v1 = UnsafeRawPointer(x + 32 * b + 16).loadUnaligned(as: SIMD16<Float>.self)
                    let amax = max(v0.replacing(with: -v0, where: v0 .< 0).max(), v1.replacing(with: -v1, where: v1 .< 0).max())
                    let d = amax / 127
                    let id: Float = d != 0 ? 1 / d : 0
                    let q0 = SIMD16<Int32>((v0 * id).rounded(.toNearestOrAwayFromZero))
                    let q1 = SIMD16<Int32>((v1 * id).rounded(.toNearestOrAwayFromZero))
                    UnsafeMutableRawPointer(values.baseAddress! + 32 * b).storeBytes(of: SIMD16<Int8>(truncatingIfNeeded: q0), as: SIMD16<Int8>.self)
                    UnsafeMutableRawPointer(values.baseAddress! + 32 * b + 16).storeBytes(of: SIMD16<Int8>(truncatingIfNeeded: q1), as: SIMD16<Int8>.self)
                    activations.scales[b] = d
                    activations.sums[b] = (v0 + v1).sum()
                }
                return body(activations)
            }
        }
    }
}

@inline(__always)
private func load256(_ pointer: UnsafeRawPointer) -> __m256i {
    _mm256_loadu_si256(pointer.assumingMemoryBound(to: __m256i.self))
}

@inline(__always)
private func horizontalSum(_ v: __m256) -> Float {
    unsafeBitCast(v, to: SIMD8<Float>.self).sum()
}

func q8_0RowKernelAVX2(_ a: Int8Activations, tokens: Int, weight: WeightMatrix, rows: Range<Int>,
                       y: UnsafeMutablePointer<Float>, outputStride: Int) {
    let blocks = weight.columns / 32
    let ones = _mm256_set1_epi16(1)
    for r in rows {
        let row = weight.rowPointer(r)
        for t in 0..<tokens {
            let xq = UnsafeRawPointer(a.values + t * weight.columns)
            let dx = a.scales + t * blocks
            var acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps()
            var acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps()
            var b = 0
            // Four blocks per iteration: four independent accumulators.
            while b + 4 <= blocks {
                let p0 = row + b &* 34, p1 = p0 + 34, p2 = p0 + 68, p3 = p0 + 102
                let w0 = load256(p0 + 2), w1 = load256(p1 + 2), w2 = load256(p2 + 2), w3 = load256(p3 + 2)
                let xb = xq + b &* 32
                let x0 = load256(xb), x1 = load256(xb + 32), x2 = load256(xb + 64), x3 = load256(xb + 96)
                let s0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(x0, w0)), ones)
                let s1 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w1, w1), _mm256_sign_epi8(x1, w1)), ones)
                let s2 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w2, w2), _mm256_sign_epi8(x2, w2)), ones)
                let s3 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w3, w3), _mm256_sign_epi8(x3, w3)), ones)
                acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(Float(halfBits: p0.loadUnaligned(as: UInt16.self)) * dx[b]), acc0)
                acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_set1_ps(Float(halfBits: p1.loadUnaligned(as: UInt16.self)) * dx[b &+ 1]), acc1)
                acc2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s2), _mm256_set1_ps(Float(halfBits: p2.loadUnaligned(as: UInt16.self)) * dx[b &+ 2]), acc2)
                acc3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s3), _mm256_set1_ps(Float(halfBits: p3.loadUnaligned(as: UInt16.self)) * dx[b &+ 3]), acc3)
                b &+= 4
            }
            acc0 = _mm256_add_ps(acc0, acc2)
            acc1 = _mm256_add_ps(acc1, acc3)
            while b + 2 <= blocks {
                let p0 = row + b &* 34, p1 = p0 + 34
                let w0 = load256(p0 + 2), w1 = load256(p1 + 2)
                let x0 = load256(xq + b &* 32), x1 = load256(xq + (b &* 32 &+ 32))
                // |w| · (x · sign w) = w · x, with |w| unsigned for vpmaddubsw.
                let s0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(x0, w0)), ones)
                let s1 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w1, w1), _mm256_sign_epi8(x1, w1)), ones)
                let d0 = Float(halfBits: p0.loadUnaligned(as: UInt16.self)) * dx[b]
                let d1 = Float(halfBits: p1.loadUnaligned(as: UInt16.self)) * dx[b &+ 1]
                acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(d0), acc0)
                acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_set1_ps(d1), acc1)
                b &+= 2
            }
            if b < blocks {
                let p0 = row + b &* 34
                let w0 = load256(p0 + 2), x0 = load256(xq + b &* 32)
                let s0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(x0, w0)), ones)
                acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(Float(halfBits: p0.loadUnaligned(as: UInt16.self)) * dx[b]), acc0)
            }
            y[t * outputStride + r] = horizontalSum(_mm256_add_ps(acc0, acc1))
        }
    }
}

func q4_KRowKernelAVX2(_ a: Int8Activations, tokens: Int, weight: WeightMatrix, rows: Range<Int>,
                       y: UnsafeMutablePointer<Float>, outputStride: Int) {
    let superBlocks = weight.columns / Q4_K.blockSize
    let blocks = weight.columns / 32
    let ones = _mm256_set1_epi16(1)
    let lowNibbles = _mm256_set1_epi8(0x0F)
    for r in rows {
        let row = weight.rowPointer(r)
        for t in 0..<tokens {
            let xq = UnsafeRawPointer(a.values + t * weight.columns)
            let dx = a.scales + t * blocks, xs = a.sums + t * blocks
            var acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps()
            var correction: Float = 0
            for s in 0..<superBlocks {
                let (d, dmin, packed, quants) = Q4_K.parts(row + s &* Q4_K.bytesPerBlock)
                for group in 0..<4 {
                    let (sc1, m1) = Q4_K.scaleMin(2 &* group, packed)
                    let (sc2, m2) = Q4_K.scaleMin(2 &* group &+ 1, packed)
                    let bytes = load256(quants + 32 &* group)
                    let low = _mm256_and_si256(bytes, lowNibbles)
                    let high = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), lowNibbles)
                    let sub = s &* 8 &+ 2 &* group  // activation block = Q4_K sub-block
                    let xLow = load256(xq + 32 &* sub), xHigh = load256(xq + (32 &* sub &+ 32))
                    // Nibbles are unsigned, activations signed: vpmaddubsw directly.
                    let pLow = _mm256_madd_epi16(_mm256_maddubs_epi16(low, xLow), ones)
                    let pHigh = _mm256_madd_epi16(_mm256_maddubs_epi16(high, xHigh), ones)
                    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pLow), _mm256_set1_ps(d * Float(sc1) * dx[sub]), acc0)
                    acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pHigh), _mm256_set1_ps(d * Float(sc2) * dx[sub &+ 1]), acc1)
                    correction += dmin * Float(m1) * xs[sub] + dmin * Float(m2) * xs[sub &+ 1]
                }
            }
            y[t * outputStride + r] = horizontalSum(_mm256_add_ps(acc0, acc1)) - correction
        }
    }
}
#endif
