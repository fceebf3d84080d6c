import Foundation

// Element-wise activations. SwiGLU is the MLP of every supported architecture:
//   down(silu(gate(x)) * up(x)),  silu(v) = v * sigmoid(v).

/// `gate[i] = silu(gate[i]) * up[i]` for `count` elements.
public func swiglu(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int) {
    for i in 0..<count {
        let g = gate[i]
        gate[i] = g / (1 + expf(-g)) * up[i]
    }
}

/// Logistic sigmoid.
@inlinable
public func sigmoid(_ v: Float) -> Float { 1 / (1 + expf(-v)) }

/// In-place softmax over `count` floats (max-subtracted, like torch).
public func softmaxInPlace(_ values: UnsafeMutablePointer<Float>, count: Int) {
    if count == 0 { return }
    var maximum = -Float.infinity
    for i in 0..<count where values[i] > maximum { maximum = values[i] }
    var sum: Float = 0
    for i in 0..<count {
        let e = expf(values[i] - maximum)
        values[i] = e
        sum += e
    }
    let inverse = 1 / sum
    for i in 0..<count { values[i] *= inverse }
}

/// gpt-oss's softmax with an attention sink (`eager_attention_forward`): the head's learned
/// logit `sink` joins the scores for the maximum and the denominator, and is then dropped,
/// so the weights sum to less than one.
public func softmaxWithSink(_ values: UnsafeMutablePointer<Float>, count: Int, sink: Float) {
    var maximum = sink
    for i in 0..<count where values[i] > maximum { maximum = values[i] }
    var sum: Float = 0
    for i in 0..<count {
        let e = expf(values[i] - maximum)
        values[i] = e
        sum += e
    }
    sum += expf(sink - maximum)
    let inverse = 1 / sum
    for i in 0..<count { values[i] *= inverse }
}

/// gpt-oss's clamped SwiGLU (`GptOssExperts._apply_gate`), in place into `gate`: the gate
/// clamped above at `limit`, the up projection to ±`limit`, then
/// `(up + 1) · gate · σ(alpha · gate)`.
public func clampedSwiglu(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int, alpha: Float, limit: Float) {
    for i in 0..<count {
        let g = min(gate[i], limit)
        let u = min(max(up[i], -limit), limit)
        let glu = g * sigmoid(g * alpha)
        gate[i] = (u + 1) * glu
    }
}

/// GELU, in place. `tanhApproximation`: torch's `gelu(approximate="tanh")`
/// (`gelu_pytorch_tanh`): 0.5·v·(1 + tanh(√(2/π)·(v + 0.044715·v³))); otherwise the exact
/// 0.5·v·(1 + erf(v/√2)) of `nn.GELU()`.
public func gelu(_ values: UnsafeMutablePointer<Float>, count: Int, tanhApproximation: Bool) {
    if tanhApproximation {
        let k = Float((2 / Double.pi).squareRoot())
        for i in 0..<count {
            let v = values[i]
            values[i] = 0.5 * v * (1 + tanhf(k * (v + 0.044715 * v * v * v)))
        }
    } else {
        for i in 0..<count {
            let v = values[i]
            values[i] = 0.5 * v * (1 + erff(v * Float(0.5.squareRoot())))
        }
    }
}
