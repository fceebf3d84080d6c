import COpenBLAS

// Linear layers: Y[t, r] = Σ_c X[t, c] · W[r, c] (+ b[r]), i.e. torch's F.linear.
//
// Bytes read per call: rows × columns × dtype bytes of weights (each weight is read once
// per call, whatever the token count) + tokens × columns × 4 of activations.
// Roofline: for decode (few tokens) the call is memory-bound, so the target is the
// machine's read bandwidth over the weight bytes; the row kernel keeps two tokens'
// accumulators in registers (each token summed as a one-token call sums it, so below the
// BLAS threshold a token's row does not depend on the token count).
// For prefill (many tokens) the call is compute-bound and goes to OpenBLAS sgemm, with
// BF16/F16 weight tiles widened to F32 in a per-thread scratch first.

/// Token counts at or above this use the BLAS path (float weights only).
public let blasTokenThreshold = 12

/// Whether a product of `tokens` rows with `weight` goes to BLAS: float weights with enough
/// tokens. Block-quantised weights always run the integer kernels, as ggml multiplies them
/// at every batch size — so a GGUF model's prefill computes what llama.cpp computes.
@inline(__always)
func usesBLAS(tokens: Int, _ weight: WeightMatrix) -> Bool {
    tokens >= blasTokenThreshold && (weight.blockFormat == nil || weight.floatActivations)
}

/// Computes `y = x · Wᵀ (+ bias)` for `tokens` rows of `x` (row-major, `weight.columns`
/// wide) into `y` (row-major, `weight.rows` wide). Spreads rows over the kernel threads.
public func linear(
    _ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, bias: UnsafePointer<Float>? = nil,
    into y: UnsafeMutablePointer<Float>
) {
    if tokens == 0 { return }
    if usesBLAS(tokens: tokens, weight) {
        linearBLAS(x, tokens: tokens, weight: weight, into: y, parallel: true)
    } else {
        let call = RowCall(x: x, tokens: tokens, weight: weight, y: y, outputStride: weight.rows,
                           prepared: kernels.prepare(x, tokens: tokens, weight: weight))
        // ~16 KiB of weights per chunk at least, so thread hand-off stays small.
        var task = RowTask(first: call, second: nil, rows: weight.rows, minimumChunk: max(1, 16_384 / max(1, weight.rowBytes)))
        task.run()
    }
    if let bias { addRowBias(bias, width: weight.rows, rows: tokens, into: y) }
}

/// Adds `bias` (`width` values) to each of `rows` consecutive rows of `y`.
public func addRowBias(_ bias: UnsafePointer<Float>, width: Int, rows: Int, into y: UnsafeMutablePointer<Float>) {
    for t in 0..<rows {
        let out = y + t * width
        for r in 0..<width { out[r] += bias[r] }
    }
}

/// `linear` without bias on the calling thread only: for callers that already run one
/// task per thread (one expert per task in `ExpertShard`).
public func linearSerial(_ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, into y: UnsafeMutablePointer<Float>) {
    if usesBLAS(tokens: tokens, weight) {
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
    let call = RowCall(x: x, tokens: tokens, weight: weight, y: y, outputStride: outputStride,
                       prepared: kernels.prepare(x, tokens: tokens, weight: weight))
    kernels.computeRows(call, rows)
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
    if usesBLAS(tokens: tokens, first) || first.blockFormat != second.blockFormat {
        if parallel {
            linear(x, tokens: tokens, weight: first, into: y1)
            linear(x, tokens: tokens, weight: second, into: y2)
        } else {
            linearSerial(x, tokens: tokens, weight: first, into: y1)
            linearSerial(x, tokens: tokens, weight: second, into: y2)
        }
        return
    }
    let prepared = kernels.prepare(x, tokens: tokens, weight: first)
    let call1 = RowCall(x: x, tokens: tokens, weight: first, y: y1, outputStride: first.rows, prepared: prepared)
    let call2 = RowCall(x: x, tokens: tokens, weight: second, y: y2, outputStride: second.rows, prepared: prepared)
    // ~16 KiB of weights per chunk, as `linear`: half from each matrix.
    var task = RowTask(first: call1, second: call2, rows: first.rows,
                       minimumChunk: parallel ? max(1, 8_192 / max(1, first.rowBytes)) : first.rows)
    task.run()
}

/// Row chunks of one product (or of two over the same input), spread over the kernel
/// threads without allocating (`parallelApply`).
struct RowTask {
    let first: RowCall
    let second: RowCall?
    let rows: Int
    let chunkSize: Int
    let chunks: Int

    init(first: RowCall, second: RowCall?, rows: Int, minimumChunk: Int) {
        self.first = first
        self.second = second
        self.rows = rows
        chunks = parallelChunkCount(rows, minimumChunk: minimumChunk)
        chunkSize = (rows + chunks - 1) / max(1, chunks)
    }

    func chunk(_ index: Int) {
        let range = (index * chunkSize)..<min(rows, (index + 1) * chunkSize)
        if range.isEmpty { return }
        kernels.computeRows(first, range)
        if let second { kernels.computeRows(second, range) }
    }

    mutating func run() {
        parallelApply(chunks, &self) { context, index in context!.assumingMemoryBound(to: RowTask.self).pointee.chunk(index) }
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
            let scratch = threadScratch(.widenedTile, Float.self, count: count * columns)
            kernels.widenRows(weight, start..<(start + count), into: scratch)
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

/// Full F32 matrix product C = A · B (row-major, B not transposed).
public func matmul(
    _ a: UnsafePointer<Float>, rows m: Int, _ b: UnsafePointer<Float>, columns n: Int, inner k: Int,
    lda: Int, ldb: Int, into c: UnsafeMutablePointer<Float>, ldc: Int
) {
    configureBLAS()
    cblas_sgemm(
        CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(m), blasint(n), blasint(k),
        1.0, a, blasint(lda), b, blasint(ldb), 0.0, c, blasint(ldc))
}

/// The general F32 product C = alpha · op(A) · op(B) + beta · C (row-major; op(X) is Xᵀ when
/// asked): m × k times k × n. For products that accumulate into C or read a transposed
/// operand in place (the chunked delta rule).
public func gemm(
    _ a: UnsafePointer<Float>, transposeA: Bool = false, lda: Int,
    _ b: UnsafePointer<Float>, transposeB: Bool = false, ldb: Int,
    into c: UnsafeMutablePointer<Float>, ldc: Int, rows m: Int, columns n: Int, inner k: Int,
    alpha: Float = 1, beta: Float = 0
) {
    configureBLAS()
    cblas_sgemm(
        CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
        blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
}

/// Solves (I + L) · X = B in place (B becomes X), L the strictly lower triangle of the
/// n × n row-major `a` — its diagonal and upper triangle are not read (torch's
/// `solve_triangular(…, upper=False, unitriangular=True)`). B: n × `columns`, row-major.
public func solveUnitLowerTriangular(
    _ a: UnsafePointer<Float>, order n: Int, lda: Int, _ b: UnsafeMutablePointer<Float>, columns: Int, ldb: Int
) {
    configureBLAS()
    cblas_strsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasUnit, blasint(n), blasint(columns), 1, a, blasint(lda),
                b, blasint(ldb))
}
