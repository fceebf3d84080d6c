import JindouTensors

// Causal scaled-dot-product attention over a per-sequence KV cache (the eager path of
// the modeling files: softmax(q·kᵀ·scale + mask)·v, with grouped-query heads).
//
// Bytes read per query token: 2 × positions × kvHeads × headDim × 4 (keys and values),
// the decode roofline once the cache outgrows the caches.

/// One query token attending to `length` cached positions.
///
/// - q: `heads × headDim` floats; k/v: `length` rows of `kvHeads × headDim` floats
///   (`rowStride` floats apart); out: `heads × headDim` floats.
/// - `first` skips positions before it (sliding-window attention).
public func attendOneToken(
    query q: UnsafePointer<Float>, heads: Int, kvHeads: Int, headDimension d: Int,
    keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, rowStride: Int,
    first: Int = 0, length: Int, scale: Float, scores: UnsafeMutablePointer<Float>,
    into out: UnsafeMutablePointer<Float>, valueDimension: Int? = nil, valueRowStride: Int? = nil,
    sinks: UnsafePointer<Float>? = nil
) {
    kernels.attendOneToken(query: q, heads: heads, kvHeads: kvHeads, headDimension: d, keys: k, values: v, rowStride: rowStride,
                           first: first, length: length, scale: scale, scores: scores, into: out,
                           valueDimension: valueDimension ?? d, valueRowStride: valueRowStride ?? rowStride, sinks: sinks)
}

/// `heads` query heads over one shared key/value head (multi-query attention; MLA's absorbed
/// form, where every head attends to the same latent rows): the scores of all heads as one
/// matrix product Q·Kᵀ, so each cached row is read once rather than once per head, softmax
/// per head (max-subtracted, as torch), then the weighted values as a second product P·V.
///
/// - q: `heads × d`; keys: `length` rows of `d` floats `rowStride` apart; values: `length`
///   rows of `valueDimension` floats `valueRowStride` apart (MLA: the keys' own prefix).
/// - scores: `heads × length` floats of scratch; out: `heads × valueDimension`.
public func attendSharedHead(
    query q: UnsafePointer<Float>, heads: Int, headDimension d: Int, keys k: UnsafePointer<Float>, rowStride: Int,
    values v: UnsafePointer<Float>, valueRowStride: Int, valueDimension dv: Int, length: Int, scale: Float,
    scores: UnsafeMutablePointer<Float>, into out: UnsafeMutablePointer<Float>
) {
    matmulTransposedB(q, rows: heads, k, rows: length, inner: d, lda: d, ldb: rowStride, into: scores, ldc: length, alpha: scale)
    for h in 0..<heads { softmaxInPlace(scores + h * length, count: length) }
    matmul(scores, rows: heads, v, columns: dv, inner: length, lda: length, ldb: valueRowStride, into: out, ldc: dv)
}
