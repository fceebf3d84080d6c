import COpenBLAS

// Linear layers: Y[t, r] = Σ_c X[t, c] · W[r, c] (+ b[r]), i.e. torch's F.linear.
//
// Bytes read per call: rows × columns × dtype bytes of weights (each weight is read once
// per call, whatever the token count) + tokens × columns × 4 of activations.
// Roofline: for decode (few tokens) the call is memory-bound, so the target is the
// machine's read bandwidth over the weight bytes; the row kernel keeps up to four
// tokens' accumulators in registers so a weight tile is loaded once per four tokens.
// For prefill (many tokens) the call is compute-bound and goes to OpenBLAS sgemm, with
// BF16/F16 weight tiles widened to F32 in a per-thread scratch first.

/// Token counts at or above this use the BLAS path.
public let blasTokenThreshold = 12

/// Computes `y = x · Wᵀ (+ bias)` for `tokens` rows of `x` (row-major, `weight.columns`
/// wide) into `y` (row-major, `weight.rows` wide). Spreads rows over the kernel threads.
public func linear(
    _ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, bias: UnsafePointer<Float>? = nil,
    into y: UnsafeMutablePointer<Float>
) {
    if tokens == 0 { return }
    if tokens >= blasTokenThreshold {
        linearBLAS(x, tokens: tokens, weight: weight, into: y, parallel: true)
    } else {
        // ~16 KiB of weights per chunk at least, so thread hand-off stays small.
        let minimumRows = max(1, 16_384 / max(1, weight.rowBytes))
        withRowKernel(x, tokens: tokens, weight: weight, into: y, outputStride: weight.rows) { kernel in
            parallelChunks(weight.rows, minimumChunk: minimumRows) { kernel($0) }
        }
    }
    if let bias {
        for t in 0..<tokens {
            let out = y + t * weight.rows
            for r in 0..<weight.rows { out[r] += bias[r] }
        }
    }
}

/// `linear` without bias on the calling thread only: for callers that already run one
/// task per thread (one expert per task in `ExpertShard`).
public func linearSerial(_ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, into y: UnsafeMutablePointer<Float>) {
    if tokens >= blasTokenThreshold {
        linearBLAS(x, tokens: tokens, weight: weight, into: y, parallel: false)
    } else {
        linearRows(x, tokens: tokens, weight: weight, rows: 0..<weight.rows, into: y, outputStride: weight.rows)
    }
}

/// Single-threaded row kernel over `rows` of `weight`; writes `y[t * outputStride + r]`.
/// Callers that already run in parallel (one expert per thread) use it directly.
public func linearRows(
    _ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, rows: Range<Int>,
    into y: UnsafeMutablePointer<Float>, outputStride: Int
) {
    withRowKernel(x, tokens: tokens, weight: weight, into: y, outputStride: outputStride) { $0(rows) }
}

/// `y1 = x · W1ᵀ` and `y2 = x · W2ᵀ` for two matrices of the same shape over the same
/// input — an expert's gate and up projections — in one pass: the input's int8 encoding
/// (quantised weights) is made once, and each chunk of rows of `first` is followed by the
/// same rows of `second`. `parallel`: rows spread over the kernel threads; otherwise on the
/// calling thread (one expert per task).
public func linearPair(
    _ x: UnsafePointer<Float>, tokens: Int, _ first: WeightMatrix, into y1: UnsafeMutablePointer<Float>,
    _ second: WeightMatrix, into y2: UnsafeMutablePointer<Float>, parallel: Bool
) {
    precondition(first.rows == second.rows && first.columns == second.columns, "linearPair: matrices of different shapes")
    if tokens == 0 { return }
    if tokens >= blasTokenThreshold || first.blockFormat != second.blockFormat {
        for (w, y) in [(first, y1), (second, y2)] {
            if parallel { linear(x, tokens: tokens, weight: w, into: y) } else { linearSerial(x, tokens: tokens, weight: w, into: y) }
        }
        return
    }
    withActivations(x, tokens: tokens, weight: first) { activations in
        let kernel1 = rowKernel(for: first, activations, x, tokens: tokens, into: y1, outputStride: first.rows)
        let kernel2 = rowKernel(for: second, activations, x, tokens: tokens, into: y2, outputStride: second.rows)
        let both = { (rows: Range<Int>) in
            kernel1(rows)
            kernel2(rows)
        }
        if parallel {
            // ~16 KiB of weights per chunk, as `linear`: half from each matrix.
            parallelChunks(first.rows, minimumChunk: max(1, 8_192 / max(1, first.rowBytes)), both)
        } else {
            both(0..<first.rows)
        }
    }
}

/// Runs `body` with the row kernel for `weight`: a function computing rows `range` of
/// `y = x · Wᵀ`. Per-call preparation happens once here, for every range `body` asks for
/// (for quantised weights on AVX2, the activations' int8 encoding).
func withRowKernel(
    _ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, into y: UnsafeMutablePointer<Float>, outputStride: Int,
    _ body: ((Range<Int>) -> Void) -> Void
) {
    withActivations(x, tokens: tokens, weight: weight) { activations in
        body(rowKernel(for: weight, activations, x, tokens: tokens, into: y, outputStride: outputStride))
    }
}

#if JINDOU_AVX2
typealias PreparedActivations = Int8Activations?
#else
typealias PreparedActivations = Void?
#endif

/// The activations' int8 encoding when `weight` is block-quantised and the integer kernels
/// are compiled in; nil otherwise.
private func withActivations(
    _ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, _ body: (PreparedActivations) -> Void
) {
    #if JINDOU_AVX2
    if weight.blockFormat != nil {
        Int8Activations.with(x, tokens: tokens, columns: weight.columns) { body($0) }
        return
    }
    #endif
    body(nil)
}

/// The row kernel for `weight`'s format (`activations` from `withActivations`).
private func rowKernel(
    for weight: WeightMatrix, _ activations: PreparedActivations, _ x: UnsafePointer<Float>, tokens: Int,
    into y: UnsafeMutablePointer<Float>, outputStride: Int
) -> (Range<Int>) -> Void {
    if let format = weight.blockFormat {
        #if JINDOU_AVX2
        let a = activations!
        switch format {
        case .q8_0: return { q8_0RowKernelAVX2(a, tokens: tokens, weight: weight, rows: $0, y: y, outputStride: outputStride) }
        case .q4_K: return { q4_KRowKernelAVX2(a, tokens: tokens, weight: weight, rows: $0, y: y, outputStride: outputStride) }
        }
        #else
        switch format {
        case .q8_0: return { q8_0RowKernel(x, tokens: tokens, weight: weight, rows: $0, y: y, outputStride: outputStride) }
        case .q4_K: return { q4_KRowKernel(x, tokens: tokens, weight: weight, rows: $0, y: y, outputStride: outputStride) }
        }
        #endif
    }
    return { denseRows(x, tokens: tokens, weight: weight, rows: $0, into: y, outputStride: outputStride) }
}

/// Rows of an F32/F16/BF16 or block-scaled FP8 matrix.
private func denseRows(
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
@usableFromInline
protocol WeightElements {
    static func load16(_ row: UnsafeRawPointer, _ column: Int) -> SIMD16<Float>
    static func load1(_ row: UnsafeRawPointer, _ column: Int) -> Float
}

@usableFromInline
enum BFloat16Weights: WeightElements {
    @inline(__always) @usableFromInline
    static func load16(_ row: UnsafeRawPointer, _ column: Int) -> SIMD16<Float> {
        let bits = row.loadUnaligned(fromByteOffset: column &* 2, as: SIMD16<UInt16>.self)
        return unsafeBitCast(SIMD16<UInt32>(truncatingIfNeeded: bits) &<< 16, to: SIMD16<Float>.self)
    }
    @inline(__always) @usableFromInline
    static func load1(_ row: UnsafeRawPointer, _ column: Int) -> Float {
        BFloat16Conversion.float(fromBits: row.loadUnaligned(fromByteOffset: column &* 2, as: UInt16.self))
    }
}

@usableFromInline
enum Float16Weights: WeightElements {
    @inline(__always) @usableFromInline
    static func load16(_ row: UnsafeRawPointer, _ column: Int) -> SIMD16<Float> {
        SIMD16<Float>(row.loadUnaligned(fromByteOffset: column &* 2, as: SIMD16<Float16>.self))
    }
    @inline(__always) @usableFromInline
    static func load1(_ row: UnsafeRawPointer, _ column: Int) -> Float {
        Float(row.loadUnaligned(fromByteOffset: column &* 2, as: Float16.self))
    }
}

@usableFromInline
enum Float32Weights: WeightElements {
    @inline(__always) @usableFromInline
    static func load16(_ row: UnsafeRawPointer, _ column: Int) -> SIMD16<Float> {
        row.loadUnaligned(fromByteOffset: column &* 4, as: SIMD16<Float>.self)
    }
    @inline(__always) @usableFromInline
    static func load1(_ row: UnsafeRawPointer, _ column: Int) -> Float {
        row.loadUnaligned(fromByteOffset: column &* 4, as: Float.self)
    }
}

@inline(__always)
private func loadActivations16(_ x: UnsafePointer<Float>, _ column: Int) -> SIMD16<Float> {
    UnsafeRawPointer(x + column).loadUnaligned(as: SIMD16<Float>.self)
}

/// Rows × tokens dot products; tokens are taken four at a time so each 16-wide weight
/// tile is widened once and used four times.
private func rowKernel<W: WeightElements>(
    _: W.Type, _ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, rows: Range<Int>,
    y: UnsafeMutablePointer<Float>, outputStride: Int
) {
    let columns = weight.columns
    let vectorEnd = columns & ~15
    for r in rows {
        let row = weight.rowPointer(r)
        var t = 0
        while t + 4 <= tokens {
            let x0 = x + t * columns, x1 = x0 + columns, x2 = x1 + columns, x3 = x2 + columns
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
            var c = 0
            while c < vectorEnd {
                let w = W.load16(row, c)
                a0 = a0.addingProduct(w, loadActivations16(x0, c))
                a1 = a1.addingProduct(w, loadActivations16(x1, c))
                a2 = a2.addingProduct(w, loadActivations16(x2, c))
                a3 = a3.addingProduct(w, loadActivations16(x3, c))
                c &+= 16
            }
            var s0 = a0.sum(), s1 = a1.sum(), s2 = a2.sum(), s3 = a3.sum()
            while c < columns {
                let w = W.load1(row, c)
                s0 += w * x0[c]; s1 += w * x1[c]; s2 += w * x2[c]; s3 += w * x3[c]
                c += 1
            }
            y[t * outputStride + r] = s0
            y[(t + 1) * outputStride + r] = s1
            y[(t + 2) * outputStride + r] = s2
            y[(t + 3) * outputStride + r] = s3
            t += 4
        }
        while t < tokens {
            let x0 = x + t * columns
            // Two accumulators hide the fused multiply-add latency on the 1-token path.
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>()
            var c = 0
            while c + 32 <= vectorEnd {
                a0 = a0.addingProduct(W.load16(row, c), loadActivations16(x0, c))
                a1 = a1.addingProduct(W.load16(row, c &+ 16), loadActivations16(x0, c &+ 16))
                c &+= 32
            }
            if c < vectorEnd {
                a0 = a0.addingProduct(W.load16(row, c), loadActivations16(x0, c))
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
        let bytes = SIMD16<UInt32>(truncatingIfNeeded: row.loadUnaligned(fromByteOffset: c, as: SIMD16<UInt8>.self))
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
                    acc = acc.addingProduct(widen16(row, c), UnsafeRawPointer(xt + c).loadUnaligned(as: SIMD16<Float>.self))
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

/// Rows of weights widened per tile to F32 and multiplied with OpenBLAS sgemm.
/// OpenBLAS runs single-threaded (see `configureBLAS`); we split row tiles over our own
/// threads so BLAS never oversubscribes cores used by expert-parallel loops.
private func linearBLAS(
    _ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, into y: UnsafeMutablePointer<Float>, parallel: Bool
) {
    configureBLAS()
    let columns = weight.columns
    // Tiles of up to ~256 KiB of F32 weights, so the widened tile stays in L2.
    let tileRows = max(8, min(weight.rows, 65_536 / max(1, columns)))
    let tiles = (weight.rows + tileRows - 1) / tileRows
    let body = { (tile: Int) in
        let start = tile * tileRows
        let count = min(tileRows, weight.rows - start)
        if weight.dtype == .float32 {
            let w = weight.rowPointer(start).assumingMemoryBound(to: Float.self)
            sgemmNT(x, tokens: tokens, w, rows: count, columns: columns, y + start, ldc: weight.rows)
        } else {
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: count * columns)
            defer { scratch.deallocate() }
            weight.widenRows(start..<(start + count), into: scratch)
            sgemmNT(x, tokens: tokens, scratch, rows: count, columns: columns, y + start, ldc: weight.rows)
        }
    }
    if parallel {
        parallelFor(tiles, body)
    } else {
        for tile in 0..<tiles { body(tile) }
    }
}

/// C[t, r] = Σ_c A[t, c] · B[r, c] with row-major A (tokens × columns), B (rows × columns).
@inline(__always)
private func sgemmNT(
    _ a: UnsafePointer<Float>, tokens: Int, _ b: UnsafePointer<Float>, rows: Int, columns: Int,
    _ c: UnsafeMutablePointer<Float>, ldc: Int
) {
    cblas_sgemm(
        CblasRowMajor, CblasNoTrans, CblasTrans, blasint(tokens), blasint(rows), blasint(columns),
        1.0, a, blasint(columns), b, blasint(columns), 0.0, c, blasint(ldc))
}

/// Full F32 matrix product C = A · Bᵀ (row-major), used by batched attention.
public func matmulTransposedB(
    _ a: UnsafePointer<Float>, rows m: Int, _ b: UnsafePointer<Float>, rows n: Int, inner k: Int,
    lda: Int, ldb: Int, into c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float = 1
) {
    configureBLAS()
    cblas_sgemm(
        CblasRowMajor, CblasNoTrans, CblasTrans, blasint(m), blasint(n), blasint(k),
        alpha, a, blasint(lda), b, blasint(ldb), 0.0, c, blasint(ldc))
}

private let blasConfigured: Bool = {
    openblas_set_num_threads(1)
    return true
}()

/// Makes OpenBLAS single-threaded once per process; Jindou parallelises around it.
public func configureBLAS() {
    _ = blasConfigured
}
