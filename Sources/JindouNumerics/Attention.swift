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
    into out: UnsafeMutablePointer<Float>, valueDimension: Int? = nil, valueRowStride: Int? = nil
) {
    let group = heads / kvHeads
    let count = length - first
    let dv = valueDimension ?? d
    let valueStride = valueRowStride ?? rowStride
    for h in 0..<heads {
        let kvHead = h / group
        let qh = q + h * d
        for p in first..<length {
            let kp = k + p * rowStride + kvHead * d
            var s: Float = 0
            for i in 0..<d { s += qh[i] * kp[i] }
            scores[p - first] = s * scale
        }
        softmaxInPlace(scores, count: count)
        let oh = out + h * dv
        for i in 0..<dv { oh[i] = 0 }
        for p in first..<length {
            let w = scores[p - first]
            let vp = v + p * valueStride + kvHead * dv
            for i in 0..<dv { oh[i] += w * vp[i] }
        }
    }
}
