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
    let dv = valueDimension ?? d, valueStride = valueRowStride ?? rowStride
    if length - first >= groupedProductMinimumLength, heads / kvHeads >= 2 {
        attendGrouped(query: q, heads: heads, kvHeads: kvHeads, headDimension: d, keys: k, values: v, rowStride: rowStride,
                      first: first, length: length, scale: scale, into: out, valueDimension: dv, valueRowStride: valueStride, sinks: sinks)
        return
    }
    kernels.attendOneToken(query: q, heads: heads, kvHeads: kvHeads, headDimension: d, keys: k, values: v, rowStride: rowStride,
                           first: first, length: length, scale: scale, scores: scores, into: out,
                           valueDimension: dv, valueRowStride: valueStride, sinks: sinks)
}

/// From this many attended positions on, grouped-query attention computes each key/value
/// head's query group as two matrix products (`attendGrouped`): every cached row is then read
/// once per key/value head instead of once per query head. The choice depends only on the
/// token's own context, so a token's result does not depend on the step it is computed in.
public let groupedProductMinimumLength = 256

/// Grouped-query attention of one token, per key/value head h: the scores of its query heads
/// (consecutive, `heads / kvHeads` of them) as Q_h·K_hᵀ · scale over positions first..<length,
/// softmax per head (with the head's sink when given), then P·V_h. The key/value heads run on
/// the kernel threads.
func attendGrouped(
    query q: UnsafePointer<Float>, heads: Int, kvHeads: Int, headDimension d: Int,
    keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, rowStride: Int,
    first: Int, length: Int, scale: Float, into out: UnsafeMutablePointer<Float>, valueDimension dv: Int, valueRowStride: Int,
    sinks: UnsafePointer<Float>?
) {
    let group = heads / kvHeads, count = length - first
    parallelFor(kvHeads) { h in
        let scores = threadScratch(.groupedScores, Float.self, count: group * count)
        matmulTransposedB(q + h * group * d, rows: group, k + first * rowStride + h * d, rows: count, inner: d, lda: d,
                          ldb: rowStride, into: scores, ldc: count, alpha: scale)
        for g in 0..<group {
            if let sinks {
                softmaxWithSink(scores + g * count, count: count, sink: sinks[h * group + g])
            } else {
                softmaxInPlace(scores + g * count, count: count)
            }
        }
        matmul(scores, rows: group, v + first * valueRowStride + h * dv, columns: dv, inner: count, lda: count,
               ldb: valueRowStride, into: out + h * group * dv, ldc: dv)
    }
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
