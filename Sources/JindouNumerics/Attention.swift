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
