import JindouTensors

// Attention inner loops (see JindouNumerics/Attention.swift for the contract).
//
// Bytes read per query token: 2 × positions × kvHeads × headDim × 4 (keys and values),
// the decode roofline once the cache outgrows the caches.

func attention(
    query q: UnsafePointer<Float>, heads: Int, kvHeads: Int, headDimension d: Int,
    keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, rowStride: Int,
    first: Int, length: Int, scale: Float, scores: UnsafeMutablePointer<Float>,
    into out: UnsafeMutablePointer<Float>, valueDimension dv: Int, valueRowStride valueStride: Int,
    sinks: UnsafePointer<Float>? = nil
) {
    let group = heads / kvHeads
    let count = length - first
    for h in 0..<heads {
        let kvHead = h / group
        let qh = q + h * d
        for p in first..<length {
            let kp = k + p * rowStride + kvHead * d
            scores[p - first] = dotProduct(qh, kp, count: d) * scale
        }
        if let sinks {
            softmaxWithSink(scores, count: count, sink: sinks[h])
        } else {
            softmaxInPlace(scores, count: count)
        }
        let oh = out + h * dv
        for i in 0..<dv { oh[i] = 0 }
        for p in first..<length {
            let w = scores[p - first]
            addScaled(v + p * valueStride + kvHead * dv, w, into: oh, count: dv)
        }
    }
}

/// Σ a[i]·b[i] with two 8-wide accumulators (a plain loop is a serial scalar chain: the
/// compiler may not reassociate floating-point sums).
@inline(__always)
func dotProduct(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count n: Int) -> Float {
    var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
    var i = 0
    while i &+ 16 <= n {
        let j = i &+ 8
        acc0 = acc0.multiplyAdding(load8(a, i), load8(b, i))
        acc1 = acc1.multiplyAdding(load8(a, j), load8(b, j))
        i &+= 16
    }
    var s = (acc0 + acc1).sum()
    while i < n {
        s += a[i] * b[i]
        i &+= 1
    }
    return s
}

/// y[i] += w · x[i].
@inline(__always)
func addScaled(_ x: UnsafePointer<Float>, _ w: Float, into y: UnsafeMutablePointer<Float>, count n: Int) {
    var i = 0
    while i &+ 8 <= n {
        let target = UnsafeMutableRawPointer(y + i)
        let sum = target.loadUnaligned(as: SIMD8<Float>.self).multiplyAdding(load8(x, i), SIMD8(repeating: w))
        target.storeBytes(of: sum, as: SIMD8<Float>.self)
        i &+= 8
    }
    while i < n {
        y[i] += w * x[i]
        i &+= 1
    }
}

@inline(__always)
private func load8(_ p: UnsafePointer<Float>, _ i: Int) -> SIMD8<Float> {
    UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
}
