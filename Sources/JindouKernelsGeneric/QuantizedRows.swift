import JindouTensors

// Linear kernels over GGUF block-quantised weights (Q8_0, Q4_K): Y[t, r] = Σ_c X[t, c] ·
// W[r, c] with W decoded block by block in registers, never materialised.
//
// Bytes read per call: rows × rowBytes of weights — Q8_0 1.0625 bytes per weight, Q4_K
// 0.5625 (bf16: 2) — plus tokens × columns × 4 of activations (cache-resident).
// Roofline: decode is memory-bound, so the target is the machine's read bandwidth over
// the weight bytes; the arithmetic per weight byte is higher than bf16 (an int8→fp32
// widening, or a nibble unpack, plus one FMA per weight), so on few cores the kernel can
// become compute-bound before it saturates memory — `jindouctl bench kernels` measures
// both (docs/benchmarks.md).
//
// Q8_0: per 32-weight block, Σ q·x in fp32 then × d. Q4_K: per 32-weight sub-block,
// d·scale·Σ q·x − dmin·min·Σ x, with Σ x per sub-block computed once per call for every
// row. Results equal the dequantised matrix's `linear` up to fp32 summation order.

@inline(__always)
private func activations16(_ x: UnsafePointer<Float>, _ column: Int) -> SIMD16<Float> {
    UnsafeRawPointer(x + column).loadUnaligned(as: SIMD16<Float>.self)
}

func q8_0RowKernel(_ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, rows: Range<Int>,
                   y: UnsafeMutablePointer<Float>, outputStride: Int) {
    let columns = weight.columns
    let blocks = columns / Q8_0.blockSize
    for r in rows {
        let row = weight.rowPointer(r)
        for t in 0..<tokens {
            let xt = x + t * columns
            var acc0 = SIMD16<Float>(), acc1 = SIMD16<Float>()
            var b = 0
            // Two blocks per iteration: independent accumulators hide FMA latency.
            while b + 2 <= blocks {
                let p0 = row + b &* Q8_0.bytesPerBlock, p1 = p0 + Q8_0.bytesPerBlock
                let d0 = Float(halfBits: p0.loadUnaligned(as: UInt16.self))
                let d1 = Float(halfBits: p1.loadUnaligned(as: UInt16.self))
                let c = b &* 32
                let s0 = SIMD16<Float>(p0.loadUnaligned(fromByteOffset: 2, as: SIMD16<Int8>.self)) * activations16(xt, c)
                    + SIMD16<Float>(p0.loadUnaligned(fromByteOffset: 18, as: SIMD16<Int8>.self)) * activations16(xt, c &+ 16)
                let s1 = SIMD16<Float>(p1.loadUnaligned(fromByteOffset: 2, as: SIMD16<Int8>.self)) * activations16(xt, c &+ 32)
                    + SIMD16<Float>(p1.loadUnaligned(fromByteOffset: 18, as: SIMD16<Int8>.self)) * activations16(xt, c &+ 48)
                acc0 = acc0.multiplyAdding(s0, SIMD16(repeating: d0))
                acc1 = acc1.multiplyAdding(s1, SIMD16(repeating: d1))
                b &+= 2
            }
            if b < blocks {
                let p0 = row + b &* Q8_0.bytesPerBlock
                let d0 = Float(halfBits: p0.loadUnaligned(as: UInt16.self))
                let c = b &* 32
                let s0 = SIMD16<Float>(p0.loadUnaligned(fromByteOffset: 2, as: SIMD16<Int8>.self)) * activations16(xt, c)
                    + SIMD16<Float>(p0.loadUnaligned(fromByteOffset: 18, as: SIMD16<Int8>.self)) * activations16(xt, c &+ 16)
                acc0 = acc0.multiplyAdding(s0, SIMD16(repeating: d0))
            }
            y[t * outputStride + r] = (acc0 + acc1).sum()
        }
    }
}

func q4_KRowKernel(_ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, rows: Range<Int>,
                   y: UnsafeMutablePointer<Float>, outputStride: Int) {
    let columns = weight.columns
    let superBlocks = columns / Q4_K.blockSize
    let subBlocks = columns / 32
    withUnsafeTemporaryAllocation(of: Float.self, capacity: max(1, tokens * subBlocks)) { sums in
        // Σ x over every 32-column sub-block, per token: the `min` term of each sub-block.
        for t in 0..<tokens {
            for j in 0..<subBlocks {
                let c = t * columns + 32 * j
                sums[t * subBlocks + j] = (activations16(x, c) + activations16(x, c + 16)).sum()
            }
        }
        let low = SIMD16<UInt8>(repeating: 0x0F)
        for r in rows {
            let row = weight.rowPointer(r)
            for t in 0..<tokens {
                let xt = x + t * columns
                let xs = sums.baseAddress! + t * subBlocks
                var acc0 = SIMD16<Float>(), acc1 = SIMD16<Float>()
                var correction: Float = 0
                for s in 0..<superBlocks {
                    let (d, dmin, packed, quants) = Q4_K.parts(row + s &* Q4_K.bytesPerBlock)
                    for group in 0..<4 {
                        let (s1, m1) = Q4_K.scaleMin(2 &* group, packed)
                        let (s2, m2) = Q4_K.scaleMin(2 &* group &+ 1, packed)
                        let q0 = quants.loadUnaligned(fromByteOffset: 32 &* group, as: SIMD16<UInt8>.self)
                        let q1 = quants.loadUnaligned(fromByteOffset: 32 &* group &+ 16, as: SIMD16<UInt8>.self)
                        let c = s &* 256 &+ group &* 64
                        let lowDot = SIMD16<Float>(q0 & low) * activations16(xt, c)
                            + SIMD16<Float>(q1 & low) * activations16(xt, c &+ 16)
                        let highDot = SIMD16<Float>(q0 &>> 4) * activations16(xt, c &+ 32)
                            + SIMD16<Float>(q1 &>> 4) * activations16(xt, c &+ 48)
                        acc0 = acc0.multiplyAdding(lowDot, SIMD16(repeating: d * Float(s1)))
                        acc1 = acc1.multiplyAdding(highDot, SIMD16(repeating: d * Float(s2)))
                        let sub = s &* 8 &+ 2 &* group
                        correction += dmin * Float(m1) * xs[sub] + dmin * Float(m2) * xs[sub &+ 1]
                    }
                }
                y[t * outputStride + r] = (acc0 + acc1).sum() - correction
            }
        }
    }
}
